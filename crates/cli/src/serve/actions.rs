//! What an operator who signed in may do: retry or skip a failed event, rebuild a projection in
//! an instance. Each queues an operator request (`projections.requests`) that a running runtime
//! of the projection carries out within about a second, exactly as `strata projections retry`,
//! `skip` and `rebuild` do. Every refusal is a 403 with the reason; bad input is a 400.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use strata_event::{AggregateRef, InstanceId};
use strata_projection::{FailedEventKey, OperatorRequest};

use super::auth::{SESSION_COOKIE, SESSION_LIFETIME};
use super::page::url_encode;
use super::{AppState, render_page};

/// The sign-in form.
#[derive(Debug, serde::Deserialize)]
pub(super) struct SignInForm {
    token: String,
}

/// `POST /signin`: a session cookie for the right token, the form again (403) for a wrong one.
pub(super) async fn sign_in(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<SignInForm>,
) -> Response {
    match state.auth.sign_in(&form.token) {
        Some((session, _)) => {
            let cookie = format!(
                "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                SESSION_LIFETIME.as_secs()
            );
            let mut response = redirect("/?notice=signed%20in");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(SET_COOKIE, value);
            }
            response
        }
        None => {
            // Slows guessing; the token's length makes it hopeless anyway.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let mut response = render_page(
                &state,
                &headers,
                &uri,
                &super::page::PageQuery::still(),
                |frame| Some(super::page::sign_in(frame, true)),
            );
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
        }
    }
}

/// The sign-out form: its CSRF token, so another site cannot sign an operator out either.
#[derive(Debug, serde::Deserialize)]
pub(super) struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /signout`.
pub(super) async fn sign_out(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<SignOutForm>,
) -> Response {
    if let Err(refusal) = state.auth.authorize(&headers, &form.csrf) {
        return (StatusCode::FORBIDDEN, refusal.message()).into_response();
    }
    state.auth.sign_out(&headers);
    let mut response = redirect("/?notice=signed%20out");
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("strata_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// An action's form. Retry and skip name a failed event; rebuild a projection and an instance.
#[derive(Debug, serde::Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    csrf: String,
    projection: String,
    instance: String,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    sequence: Option<u64>,
    /// Where to go back to: a path of this server.
    return_to: Option<String>,
}

/// `POST /actions/{retry|skip|rebuild}`.
pub(super) async fn act(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(action): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(refusal) = state.auth.authorize(&headers, &form.csrf) {
        return (StatusCode::FORBIDDEN, refusal.message()).into_response();
    }
    let request = match request_of(&action, &form) {
        Ok(request) => request,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let registered = state
        .latest()
        .is_some_and(|sample| sample.projection(&form.projection).is_some());
    if !registered {
        return (
            StatusCode::BAD_REQUEST,
            format!("no projection named {:?} is registered", form.projection),
        )
            .into_response();
    }
    let notice =
        match strata_postgres::admin::request_projection_work(&state.store, &[request]).await {
            Ok(_) => {
                // The operator's log of what was asked through the page.
                eprintln!(
                    "{action} requested for {} in {} from the status page",
                    form.projection, form.instance
                );
                format!(
                    "{action} of {} in {} queued; a running runtime carries it out within a second",
                    form.projection, form.instance
                )
            }
            Err(err) => format!("{action} failed: {err}"),
        };
    let back = form
        .return_to
        .as_deref()
        // A path of this server only: no scheme-relative `//host`, no backslash or control
        // character or space a browser might drop to make one.
        .filter(|path| {
            path.starts_with('/')
                && !path.starts_with("//")
                && !path
                    .chars()
                    .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
        })
        .unwrap_or("/");
    let (path, query) = back.split_once('?').unwrap_or((back, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|part| !part.is_empty() && !part.starts_with("notice="))
        .collect();
    let mut location = format!("{path}?");
    for part in kept {
        location.push_str(part);
        location.push('&');
    }
    location.push_str("notice=");
    location.push_str(&url_encode(&notice));
    redirect(&location)
}

/// The operator request a form asks for.
fn request_of(action: &str, form: &ActionForm) -> Result<OperatorRequest, String> {
    let instance =
        InstanceId::new(form.instance.clone()).map_err(|err| format!("instance: {err}"))?;
    if action == "rebuild" {
        return Ok(OperatorRequest::Rebuild {
            projection: form.projection.clone(),
            instance_id: instance,
        });
    }
    let (Some(aggregate_type), Some(aggregate_id), Some(sequence)) =
        (&form.aggregate_type, &form.aggregate_id, form.sequence)
    else {
        return Err(
            "retry and skip name a failed event: aggregate_type, aggregate_id and sequence".into(),
        );
    };
    let aggregate = AggregateRef::new(
        instance.as_str(),
        aggregate_type.as_str(),
        aggregate_id.as_str(),
    )
    .map_err(|err| format!("aggregate: {err}"))?;
    let key = FailedEventKey {
        projection: form.projection.clone(),
        aggregate,
        sequence,
    };
    match action {
        "retry" => Ok(OperatorRequest::Retry(key)),
        "skip" => Ok(OperatorRequest::Skip(key)),
        other => Err(format!("unknown action {other:?}: retry, skip or rebuild")),
    }
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}
