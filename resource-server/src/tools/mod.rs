//! The MCP tools: TaskManager's tasks (`list_tasks`, `get_task` with `read`; `create_task`,
//! `update_task`, `delete_task` with `write`) and `auth_status`.
//!
//! The HTTP layer (`bearer`) has already authenticated the request and enforced the scope of
//! the called tool (403 step-up); the handlers read the checked [`Identity`] from the HTTP
//! request parts rmcp passes along, and check the scope again before acting.
//! Failures of TaskManager are tool results with `isError: true` and a next step for the
//! user, never protocol errors.

mod auth_status;
mod tasks;

use crate::bearer::Identity;
use crate::ops::Metrics;
use crate::upstream::Upstream;
use axum::http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use std::sync::Arc;

pub use tasks::{CreateTaskParams, ListTasksParams, TaskIdParams, UpdateTaskParams};

/// Scope of the tools that only read.
pub const READ: &str = "read";
/// Scope of the tools that change data.
pub const WRITE: &str = "write";

/// The scope a tool needs (unknown tools: `read`; rmcp then answers that they do not exist).
pub fn required_scope(tool: &str) -> &'static str {
    match tool {
        "create_task" | "update_task" | "delete_task" => WRITE,
        _ => READ,
    }
}

/// The MCP server handler: one per MCP session (rmcp's service factory clones it).
#[derive(Clone)]
pub struct TaskTools {
    upstream: Upstream,
    metrics: Arc<Metrics>,
    tool_router: ToolRouter<Self>,
}

impl TaskTools {
    pub fn new(upstream: Upstream, metrics: Arc<Metrics>) -> Self {
        Self {
            upstream,
            metrics,
            tool_router: Self::tool_router(),
        }
    }

    /// The caller's identity, if it holds `scope` for `tool`; otherwise an error result.
    fn identity(&self, parts: &Parts, tool: &str) -> Result<Identity, CallToolResult> {
        let Some(identity) = parts.extensions.get::<Identity>() else {
            return Err(error_result(
                "This request carries no authenticated user. Reconnect this MCP server.",
            ));
        };
        let scope = required_scope(tool);
        if !identity.scope.contains(scope) {
            return Err(error_result(format!(
                "`{tool}` needs the `{scope}` scope, which this access token lacks. Re-authorize \
                 this MCP server and approve `{scope}` access."
            )));
        }
        Ok(identity.clone())
    }

    fn finish(&self, result: CallToolResult) -> CallToolResult {
        self.metrics.tool_call(result.is_error == Some(true));
        result
    }
}

/// A tool result with `isError: true` and the message for the user.
pub fn error_result(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

#[tool_router]
impl TaskTools {
    #[tool(
        description = "List the signed-in user's TaskManager tasks (id, title, description, completed, timestamps). Optionally only completed or only open ones. Needs the `read` scope.",
        annotations(title = "List tasks", read_only_hint = true, open_world_hint = true)
    )]
    async fn list_tasks(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(params): Parameters<ListTasksParams>,
    ) -> CallToolResult {
        let result = match self.identity(&parts, "list_tasks") {
            Ok(id) => tasks::list(&self.upstream, &id, params).await,
            Err(e) => e,
        };
        self.finish(result)
    }

    #[tool(
        description = "Get one of the user's TaskManager tasks by its id (as shown by list_tasks). Needs the `read` scope.",
        annotations(title = "Get task", read_only_hint = true, open_world_hint = true)
    )]
    async fn get_task(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(params): Parameters<TaskIdParams>,
    ) -> CallToolResult {
        let result = match self.identity(&parts, "get_task") {
            Ok(id) => tasks::get(&self.upstream, &id, params).await,
            Err(e) => e,
        };
        self.finish(result)
    }

    #[tool(
        description = "Create a TaskManager task for the user with a title and an optional description. Returns the new task with its id. Needs the `write` scope.",
        annotations(
            title = "Create task",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn create_task(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(params): Parameters<CreateTaskParams>,
    ) -> CallToolResult {
        let result = match self.identity(&parts, "create_task") {
            Ok(id) => tasks::create(&self.upstream, &id, params).await,
            Err(e) => e,
        };
        self.finish(result)
    }

    #[tool(
        description = "Change a TaskManager task of the user: its title, description and/or completed flag (only the fields given change). Needs the `write` scope.",
        annotations(
            title = "Update task",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn update_task(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(params): Parameters<UpdateTaskParams>,
    ) -> CallToolResult {
        let result = match self.identity(&parts, "update_task") {
            Ok(id) => tasks::update(&self.upstream, &id, params).await,
            Err(e) => e,
        };
        self.finish(result)
    }

    #[tool(
        description = "Delete one of the user's TaskManager tasks by id. This cannot be undone. Needs the `write` scope.",
        annotations(
            title = "Delete task",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn delete_task(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(params): Parameters<TaskIdParams>,
    ) -> CallToolResult {
        let result = match self.identity(&parts, "delete_task") {
            Ok(id) => tasks::delete(&self.upstream, &id, params).await,
            Err(e) => e,
        };
        self.finish(result)
    }

    #[tool(
        description = "Show who is signed in: the TaskManager user, the MCP client, the granted scopes, when the access token expires, and whether TaskManager access works (fresh / refreshed / needs re-authorization), with the next step to take. Needs the `read` scope.",
        annotations(
            title = "Authorization status",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn auth_status(&self, Extension(parts): Extension<Parts>) -> CallToolResult {
        let result = match self.identity(&parts, "auth_status") {
            Ok(id) => auth_status::report(&self.upstream, &id, shared::UnixTime::now()).await,
            Err(e) => e,
        };
        self.finish(result)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TaskTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "taskmanager-mcp",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Tools for the signed-in user's TaskManager tasks. Use list_tasks to find task \
                 ids. Creating, changing or deleting tasks needs the `write` scope; call \
                 auth_status to see what this session may do and how to fix access problems.",
            )
    }
}
