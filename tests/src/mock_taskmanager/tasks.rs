//! The tasks API, protected by TaskManager's access tokens (RFC 6750): `read` to list and
//! fetch, `write` to create, change and delete. Each user sees only their own tasks; another
//! user's task answers 404 exactly like a missing one.

use super::error::ApiError;
use super::oauth::bearer;
use super::state::{AccessRecord, Db, MockState};
use super::util::rfc3339;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use shared::UnixTime;

/// Longest accepted title and description, characters.
const MAX_TITLE: usize = 500;
const MAX_DESCRIPTION: usize = 10_000;

/// A stored task.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: String,
    pub title: String,
    pub description: String,
    pub completed: bool,
    /// The owner's `sub`.
    pub owner: String,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// A task on the wire.
#[derive(Debug, Serialize)]
struct TaskView {
    id: String,
    title: String,
    description: String,
    completed: bool,
    owner: String,
    created_at: String,
    updated_at: String,
}

impl From<&TaskRecord> for TaskView {
    fn from(t: &TaskRecord) -> Self {
        Self {
            id: t.id.clone(),
            title: t.title.clone(),
            description: t.description.clone(),
            completed: t.completed,
            owner: t.owner.clone(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

#[derive(Debug, Deserialize)]
struct CreateTask {
    title: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UpdateTask {
    title: Option<String>,
    description: Option<String>,
    completed: Option<bool>,
}

/// Alice's starting tasks.
pub(crate) fn seed(db: &mut Db, now: UnixTime) {
    for (title, description) in [
        ("Buy groceries", "Milk, eggs, bread"),
        ("Write the quarterly report", "Due Friday"),
    ] {
        let id = next_id(db);
        db.tasks.push(TaskRecord {
            id,
            title: title.into(),
            description: description.into(),
            completed: false,
            owner: "user-alice".into(),
            created_at: now,
            updated_at: now,
        });
    }
}

fn next_id(db: &mut Db) -> String {
    db.next_task_id += 1;
    format!("task-{}", db.next_task_id)
}

pub(crate) fn routes() -> Router<MockState> {
    Router::new()
        .route("/api/tasks", get(list).post(create))
        .route("/api/tasks/{id}", get(fetch).patch(update).delete(remove))
}

/// The caller's token, which must carry `scope`.
fn authorize(
    state: &MockState,
    headers: &HeaderMap,
    scope: &'static str,
    now: UnixTime,
) -> Result<AccessRecord, ApiError> {
    let token = bearer(state, headers, now)?;
    if !token.scope.contains(scope) {
        return Err(ApiError::insufficient_scope(scope));
    }
    Ok(token)
}

fn check_title(title: &str) -> Result<String, ApiError> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE {
        return Err(ApiError::invalid_request(format!(
            "title must be 1 to {MAX_TITLE} characters"
        )));
    }
    Ok(title.to_owned())
}

fn check_description(description: String) -> Result<String, ApiError> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::invalid_request(format!(
            "description must be at most {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(description)
}

fn not_found() -> ApiError {
    ApiError::not_found("no such task")
}

async fn list(
    State(state): State<MockState>,
    headers: HeaderMap,
) -> Result<Json<Vec<TaskView>>, ApiError> {
    let token = authorize(&state, &headers, "read", UnixTime::now())?;
    let db = state.db();
    Ok(Json(
        db.tasks
            .iter()
            .filter(|t| t.owner == token.sub)
            .map(TaskView::from)
            .collect(),
    ))
}

async fn create(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let now = UnixTime::now();
    let token = authorize(&state, &headers, "write", now)?;
    let params: CreateTask = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("bad task: {e}")))?;
    let title = check_title(&params.title)?;
    let description = check_description(params.description.unwrap_or_default())?;
    let mut db = state.db();
    let task = TaskRecord {
        id: next_id(&mut db),
        title,
        description,
        completed: false,
        owner: token.sub,
        created_at: now,
        updated_at: now,
    };
    let view = TaskView::from(&task);
    db.tasks.push(task);
    Ok((StatusCode::CREATED, Json(view)))
}

async fn fetch(
    State(state): State<MockState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let token = authorize(&state, &headers, "read", UnixTime::now())?;
    let db = state.db();
    db.tasks
        .iter()
        .find(|t| t.id == id && t.owner == token.sub)
        .map(|t| Json(TaskView::from(t)))
        .ok_or_else(not_found)
}

async fn update(
    State(state): State<MockState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<TaskView>, ApiError> {
    let now = UnixTime::now();
    let token = authorize(&state, &headers, "write", now)?;
    let params: UpdateTask = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("bad task update: {e}")))?;
    let title = params.title.as_deref().map(check_title).transpose()?;
    let description = params.description.map(check_description).transpose()?;
    let mut db = state.db();
    let task = db
        .tasks
        .iter_mut()
        .find(|t| t.id == id && t.owner == token.sub)
        .ok_or_else(not_found)?;
    if let Some(title) = title {
        task.title = title;
    }
    if let Some(description) = description {
        task.description = description;
    }
    if let Some(completed) = params.completed {
        task.completed = completed;
    }
    task.updated_at = now;
    Ok(Json(TaskView::from(&*task)))
}

async fn remove(
    State(state): State<MockState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let token = authorize(&state, &headers, "write", UnixTime::now())?;
    let mut db = state.db();
    let index = db
        .tasks
        .iter()
        .position(|t| t.id == id && t.owner == token.sub)
        .ok_or_else(not_found)?;
    db.tasks.remove(index);
    Ok(StatusCode::NO_CONTENT)
}
