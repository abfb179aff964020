//! The sign-in form, or why there is none.

use super::{Frame, layout};

/// The sign-in form, or why there is none.
pub(in crate::serve) fn sign_in(frame: &Frame<'_>, failed: bool) -> String {
    let content = if frame.actions_enabled {
        format!(
            "<h2>Sign in</h2><p>Retry, skip and rebuild need the token `strata serve` was started with.</p>{}\
             <form method=\"post\" action=\"/signin\" class=\"filter\">\
             <input type=\"password\" name=\"token\" placeholder=\"token\" autocomplete=\"current-password\" required>\
             <button type=\"submit\" id=\"signin\">Sign in</button></form>",
            if failed {
                "<div class=\"alert\">That is not the token.</div>"
            } else {
                ""
            }
        )
    } else {
        "<h2>Read-only</h2><p>This server was started without <code>--token</code> \
         (or <code>STRATA_SERVE_TOKEN</code>), so it offers no actions.</p>"
            .to_owned()
    };
    layout(frame, "Sign in", &content)
}
