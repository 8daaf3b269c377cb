//! `url-rewrite`: rewrite the URL the upstream receives, made from the request URL
//! (`scheme://authority/path?query`) by [`super::rewrite`]: `from`'s matches are
//! replaced by `to` (both interpolate `${…}`), or without `from` the URL becomes `to`.
//! The upstream gets the new URL's path and query; the client's URL is unchanged. A
//! `from` that does not match leaves the request as it is.

use serde::Deserialize;

use super::rewrite::{Outcome, Rewrite, BAD_PATTERN};
use super::{Exchange, Url};
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::Phase;

/// Config of `url-rewrite` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlRewriteConfig {
    /// What to match in the URL; without it, the whole URL is replaced.
    #[serde(default)]
    pub from: Option<String>,
    /// What to replace it with.
    #[serde(deserialize_with = "super::scalar_string")]
    pub to: String,
}

/// `url-rewrite`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRewrite {
    rewrite: Rewrite,
}

impl UrlRewrite {
    /// Compiles the regex and the template.
    pub fn new(config: UrlRewriteConfig, phase: Phase) -> Result<Self, String> {
        Ok(UrlRewrite {
            rewrite: Rewrite::new(config.from.as_deref(), &config.to, phase)?,
        })
    }

    /// Rewrites the request target when `from` matches; records the result.
    pub fn apply(&self, x: &mut dyn Exchange) {
        let url = Url::of(x.facts());
        let (origin, full) = (url.origin(), url.full());
        let (rewritten, matches) = match self.rewrite.apply(x.facts(), &full) {
            Outcome::Unchanged => return,
            Outcome::Failed(message) => {
                if let Some(results) = x.results() {
                    results.url_rewrite.error = (BAD_PATTERN, message);
                }
                return;
            }
            Outcome::Rewritten { url, matches } => (url, matches),
        };
        let Some(target) = origin_form(&rewritten, &origin) else {
            return;
        };
        x.set_target(&target);
        if let Some(results) = x.results() {
            let result = &mut results.url_rewrite;
            result.url = format!("{origin}{target}");
            result.matches = matches;
            result.error = ("", String::new());
        }
    }
}

/// The `/path?query` a rewritten URL names: after this request's origin, after any
/// other `scheme://authority`, or the URL itself when it starts with `/`. It goes on
/// the request line, so only visible ASCII is kept; `None` when no path is left.
fn origin_form(url: &str, origin: &str) -> Option<String> {
    let rest = if let Some(rest) = url.strip_prefix(origin) {
        rest
    } else if url.starts_with('/') && !url.starts_with("//") {
        url
    } else {
        let after_scheme = &url[url.find("://")? + 3..];
        &after_scheme[after_scheme.find('/').unwrap_or(after_scheme.len())..]
    };
    let target: String = rest.chars().filter(|c| c.is_ascii_graphic()).collect();
    match target.as_str() {
        "" => Some("/".to_string()),
        t if t.starts_with('/') => Some(target),
        t if t.starts_with('?') => Some(format!("/{t}")),
        _ => None,
    }
}

impl PolicyAction for UrlRewrite {
    type Config = UrlRewriteConfig;

    fn compile(config: UrlRewriteConfig, phase: Phase) -> Result<Self, String> {
        UrlRewrite::new(config, phase)
    }

    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        self.apply(x);
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::origin_form;

    #[test]
    fn the_upstream_gets_the_path_and_query_of_the_new_url() {
        let origin = "https://example.com";
        assert_eq!(
            origin_form("https://example.com/products.php?q=1", origin).as_deref(),
            Some("/products.php?q=1")
        );
        assert_eq!(
            origin_form("https://example.com", origin).as_deref(),
            Some("/")
        );
        assert_eq!(origin_form("/a b", origin).as_deref(), Some("/ab"));
        assert_eq!(
            origin_form("http://other.test/x?y", origin).as_deref(),
            Some("/x?y")
        );
        assert_eq!(origin_form("https://example.comx", origin), None);
        assert_eq!(origin_form("no-url", origin), None);
    }
}
