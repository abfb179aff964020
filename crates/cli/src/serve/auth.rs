//! Who may act: an operator who signed in with the token `strata serve` was started with gets a
//! session cookie (`HttpOnly`, `SameSite=Strict`) and a CSRF token that every action's form
//! carries. An action is refused unless the cookie names a live session, the form's token is that
//! session's, and the browser says the request comes from this origin (`Sec-Fetch-Site`,
//! `Origin`). Without `--token` there are no sessions and no actions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use sha2::{Digest, Sha256};

/// The cookie that names a session.
pub(super) const SESSION_COOKIE: &str = "strata_session";
/// How long a session lasts after sign-in.
pub(super) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// The shortest token `strata serve` accepts: long enough that guessing is hopeless.
pub(super) const MIN_TOKEN_LEN: usize = 16;

/// Why an action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Started without a token: no actions at all.
    ActionsDisabled,
    /// No live session: sign in first.
    NotSignedIn,
    /// The form's CSRF token is not the session's.
    BadCsrfToken,
    /// The browser says another site sent the request.
    CrossOrigin,
}

impl Refusal {
    pub(super) fn message(self) -> &'static str {
        match self {
            Refusal::ActionsDisabled => {
                "refused: this server was started without --token, so it takes no actions"
            }
            Refusal::NotSignedIn => "refused: sign in with the token first (/signin)",
            Refusal::BadCsrfToken => {
                "refused: the form's CSRF token does not belong to your session; reload the page"
            }
            Refusal::CrossOrigin => "refused: the request came from another site",
        }
    }
}

#[derive(Debug)]
struct Session {
    csrf: String,
    expires: Instant,
}

/// The token and the live sessions.
#[derive(Debug)]
pub(super) struct Auth {
    /// SHA-256 of the token: compared digest to digest, so the comparison takes the same time
    /// whatever was offered.
    token_digest: Option<[u8; 32]>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Auth {
    pub(super) fn new(token: Option<&str>) -> Self {
        Auth {
            token_digest: token.map(digest),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn actions_enabled(&self) -> bool {
        self.token_digest.is_some()
    }

    /// A new session `(id, csrf token)` when `offered` is the token.
    pub(super) fn sign_in(&self, offered: &str) -> Option<(String, String)> {
        let expected = self.token_digest?;
        if !constant_time_eq(&expected, &digest(offered)) {
            return None;
        }
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, session| session.expires > now);
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + SESSION_LIFETIME,
            },
        );
        Some((id, csrf))
    }

    /// The CSRF token of the request's live session, if it has one.
    pub(super) fn csrf_of(&self, headers: &HeaderMap) -> Option<String> {
        let id = session_id(headers)?;
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(&id)
            .filter(|session| session.expires > Instant::now())
            .map(|session| session.csrf.clone())
    }

    /// Whether the request may act.
    pub(super) fn authorize(&self, headers: &HeaderMap, form_csrf: &str) -> Result<(), Refusal> {
        if !self.actions_enabled() {
            return Err(Refusal::ActionsDisabled);
        }
        if !same_origin(headers) {
            return Err(Refusal::CrossOrigin);
        }
        let csrf = self.csrf_of(headers).ok_or(Refusal::NotSignedIn)?;
        if constant_time_eq(&digest(&csrf), &digest(form_csrf)) {
            Ok(())
        } else {
            Err(Refusal::BadCsrfToken)
        }
    }

    /// Ends the request's session.
    pub(super) fn sign_out(&self, headers: &HeaderMap) {
        if let Some(id) = session_id(headers) {
            self.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes from the operating system, in hex.
fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Whether the browser says the request comes from this origin. Browsers send `Sec-Fetch-Site`
/// (and `Origin` on a POST); a client that sends neither is not a browser another site could
/// have steered, and still needs the session cookie and its CSRF token.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        map
    }

    #[test]
    fn only_the_token_signs_in_and_only_the_session_csrf_acts() {
        let auth = Auth::new(Some("a-long-enough-token"));
        assert!(auth.sign_in("wrong").is_none());
        let (id, csrf) = auth.sign_in("a-long-enough-token").expect("signed in");
        let cookie = format!("other=1; {SESSION_COOKIE}={id}");
        let request = headers(&[
            ("cookie", &cookie),
            ("host", "127.0.0.1:1"),
            ("origin", "http://127.0.0.1:1"),
        ]);
        assert_eq!(auth.authorize(&request, &csrf), Ok(()));
        assert_eq!(
            auth.authorize(&request, "forged"),
            Err(Refusal::BadCsrfToken)
        );
        let foreign = headers(&[
            ("cookie", &cookie),
            ("host", "127.0.0.1:1"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(auth.authorize(&foreign, &csrf), Err(Refusal::CrossOrigin));
        let cross_site = headers(&[("cookie", &cookie), ("sec-fetch-site", "cross-site")]);
        assert_eq!(
            auth.authorize(&cross_site, &csrf),
            Err(Refusal::CrossOrigin)
        );
        assert_eq!(
            auth.authorize(&headers(&[]), &csrf),
            Err(Refusal::NotSignedIn)
        );
        auth.sign_out(&request);
        assert_eq!(auth.authorize(&request, &csrf), Err(Refusal::NotSignedIn));
    }

    #[test]
    fn without_a_token_nothing_signs_in() {
        let auth = Auth::new(None);
        assert!(auth.sign_in("").is_none());
        assert_eq!(
            auth.authorize(&headers(&[]), ""),
            Err(Refusal::ActionsDisabled)
        );
    }
}
