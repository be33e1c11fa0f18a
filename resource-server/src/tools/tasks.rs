//! The task tools: argument types (their JSON Schemas are the tools' input schemas) and the
//! calls to TaskManager's tasks API (CONTRACTS.md, "Tasks API").

use super::error_result;
use crate::bearer::Identity;
use crate::upstream::{TmRequest, Upstream};
use reqwest::Method;
use rmcp::model::{CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// Arguments of `list_tasks`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListTasksParams {
    /// Only completed tasks (`true`) or only open ones (`false`); all when absent.
    #[serde(default)]
    pub completed: Option<bool>,
}

/// Arguments of `get_task` and `delete_task`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskIdParams {
    /// The task's id, as returned by list_tasks.
    #[serde(deserialize_with = "string_or_number")]
    #[schemars(with = "String")]
    pub id: String,
}

/// Arguments of `create_task`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateTaskParams {
    /// Short title of the task.
    pub title: String,
    /// Longer free-text description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Arguments of `update_task`: the id, and at least one field to change.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct UpdateTaskParams {
    /// The task's id, as returned by list_tasks.
    #[serde(deserialize_with = "string_or_number")]
    #[schemars(with = "String")]
    pub id: String,
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// Mark the task done (`true`) or not done (`false`).
    #[serde(default)]
    pub completed: Option<bool>,
}

/// Ids are strings in the schema; a client sending a number means the same task.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom("id must be a string")),
    }
}

fn check_id(id: &str) -> Result<(), CallToolResult> {
    if id.trim().is_empty() {
        return Err(error_result(
            "The task id is empty. Use list_tasks to see your tasks and their ids.",
        ));
    }
    Ok(())
}

fn ok(value: serde_json::Value) -> CallToolResult {
    CallToolResult::structured(value)
}

async fn run(
    upstream: &Upstream,
    identity: &Identity,
    request: TmRequest,
) -> Result<Option<serde_json::Value>, CallToolResult> {
    upstream
        .call(identity, &request)
        .await
        .map_err(|f| error_result(f.message))
}

/// `list_tasks`.
pub async fn list(
    upstream: &Upstream,
    identity: &Identity,
    params: ListTasksParams,
) -> CallToolResult {
    let request = TmRequest {
        method: Method::GET,
        task_id: None,
        body: None,
    };
    let value = match run(upstream, identity, request).await {
        Ok(v) => v.unwrap_or_else(|| serde_json::json!([])),
        Err(e) => return e,
    };
    // TaskManager answers an array; tolerate an object wrapping it.
    let tasks = match value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(mut o) => match o.remove("tasks") {
            Some(serde_json::Value::Array(items)) => items,
            _ => return error_result("TaskManager sent an unexpected task list. Try again later."),
        },
        _ => return error_result("TaskManager sent an unexpected task list. Try again later."),
    };
    let tasks: Vec<_> = tasks
        .into_iter()
        .filter(|t| {
            params
                .completed
                .is_none_or(|want| t.get("completed").and_then(|c| c.as_bool()) == Some(want))
        })
        .collect();
    let count = tasks.len();
    let mut result = ok(serde_json::json!({ "tasks": tasks, "count": count }));
    result.content.insert(
        0,
        ContentBlock::text(match count {
            0 => "No tasks found.".to_owned(),
            1 => "1 task:".to_owned(),
            n => format!("{n} tasks:"),
        }),
    );
    result
}

/// `get_task`.
pub async fn get(upstream: &Upstream, identity: &Identity, params: TaskIdParams) -> CallToolResult {
    if let Err(e) = check_id(&params.id) {
        return e;
    }
    let request = TmRequest {
        method: Method::GET,
        task_id: Some(params.id),
        body: None,
    };
    match run(upstream, identity, request).await {
        Ok(Some(task)) => ok(task),
        Ok(None) => error_result("TaskManager answered without the task. Try again later."),
        Err(e) => e,
    }
}

/// `create_task`.
pub async fn create(
    upstream: &Upstream,
    identity: &Identity,
    params: CreateTaskParams,
) -> CallToolResult {
    if params.title.trim().is_empty() {
        return error_result("The title is empty. Give the task a short title.");
    }
    let mut body = serde_json::json!({ "title": params.title });
    if let Some(d) = params.description {
        body["description"] = serde_json::Value::String(d);
    }
    let request = TmRequest {
        method: Method::POST,
        task_id: None,
        body: Some(body),
    };
    match run(upstream, identity, request).await {
        Ok(Some(task)) => ok(task),
        Ok(None) => ok(serde_json::json!({ "created": true })),
        Err(e) => e,
    }
}

/// `update_task`.
pub async fn update(
    upstream: &Upstream,
    identity: &Identity,
    params: UpdateTaskParams,
) -> CallToolResult {
    if let Err(e) = check_id(&params.id) {
        return e;
    }
    let mut body = serde_json::Map::new();
    if let Some(t) = params.title {
        if t.trim().is_empty() {
            return error_result("The new title is empty. Give a non-empty title or leave it out.");
        }
        body.insert("title".into(), t.into());
    }
    if let Some(d) = params.description {
        body.insert("description".into(), d.into());
    }
    if let Some(c) = params.completed {
        body.insert("completed".into(), c.into());
    }
    if body.is_empty() {
        return error_result(
            "Nothing to change: give at least one of title, description or completed.",
        );
    }
    let request = TmRequest {
        method: Method::PATCH,
        task_id: Some(params.id),
        body: Some(serde_json::Value::Object(body)),
    };
    match run(upstream, identity, request).await {
        Ok(Some(task)) => ok(task),
        Ok(None) => ok(serde_json::json!({ "updated": true })),
        Err(e) => e,
    }
}

/// `delete_task`.
pub async fn delete(
    upstream: &Upstream,
    identity: &Identity,
    params: TaskIdParams,
) -> CallToolResult {
    if let Err(e) = check_id(&params.id) {
        return e;
    }
    let id = params.id.clone();
    let request = TmRequest {
        method: Method::DELETE,
        task_id: Some(params.id),
        body: None,
    };
    match run(upstream, identity, request).await {
        Ok(_) => {
            let mut r = ok(serde_json::json!({ "deleted": true, "id": id }));
            r.content = vec![ContentBlock::text(format!("Task `{id}` was deleted."))];
            r
        }
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_may_be_numbers() {
        let p: TaskIdParams = serde_json::from_value(serde_json::json!({"id": 3})).unwrap();
        assert_eq!(p.id, "3");
        let p: TaskIdParams = serde_json::from_value(serde_json::json!({"id": "t-3"})).unwrap();
        assert_eq!(p.id, "t-3");
        assert!(serde_json::from_value::<TaskIdParams>(serde_json::json!({"id": true})).is_err());
    }

    #[test]
    fn schemas_describe_the_arguments() {
        let schema = serde_json::to_value(schemars::schema_for!(UpdateTaskParams)).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["id"]));
        assert_eq!(schema["properties"]["id"]["type"], "string");
        assert!(schema["properties"]["completed"]["description"].is_string());
    }
}
