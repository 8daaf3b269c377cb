//! Authtokens: what tunnel agents authenticate with (SPEC §8), as the hosted
//! service's authtokens. One belongs to an account; its secret is shown once, when it
//! is made, and only its SHA-256 is kept. The API lists and revokes them by id.

use serde::{Deserialize, Serialize};

use crate::endpoint::hash_key;

/// How a token starts, so that people and secret scanners can tell it from an API
/// key (`ig_`).
pub const TOKEN_PREFIX: &str = "igt_";

/// The longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 255;

/// An authtoken as stored: never its secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredAuthtoken {
    /// `at_…`, sortable by creation time.
    pub id: String,
    /// The owning account's id.
    pub account: String,
    /// SHA-256 of the token, hex. Tokens are random and long, so a fast hash is
    /// enough (as for API keys).
    pub sha256: String,
    /// Free text.
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
}

impl StoredAuthtoken {
    /// The API's view, without any secret.
    pub fn view(&self) -> AuthtokenView {
        AuthtokenView {
            id: self.id.clone(),
            uri: format!("/authtokens/{}", self.id),
            description: self.description.clone(),
            created_at: self.created_at.clone(),
        }
    }

    /// What the tunnel listener needs to accept the token.
    pub fn hash(&self) -> AuthtokenHash {
        AuthtokenHash {
            id: self.id.clone(),
            account: self.account.clone(),
            sha256: self.sha256.clone(),
        }
    }
}

/// A live authtoken as the data plane's tunnel listener will check it: a presented
/// token is accepted when its SHA-256 (hex) is one of these, for that account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthtokenHash {
    /// `at_…`.
    pub id: String,
    /// The owning account's id.
    pub account: String,
    /// SHA-256 of the token, lowercase hex.
    pub sha256: String,
}

/// An authtoken as `GET /authtokens` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthtokenView {
    /// `at_…`.
    pub id: String,
    /// `/authtokens/{id}`.
    pub uri: String,
    /// Free text.
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
}

/// The answer to `POST /authtokens`: the only time the token itself is shown.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreatedAuthtoken {
    /// The new authtoken.
    #[serde(flatten)]
    pub authtoken: AuthtokenView,
    /// The secret (`igt_…`); only its hash is kept.
    pub token: String,
}

/// The body of `POST /authtokens` (optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAuthtoken {
    /// Free text, at most [`MAX_DESCRIPTION`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The answer to `GET /authtokens`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthtokenList {
    /// Newest first.
    pub authtokens: Vec<AuthtokenView>,
    /// `/authtokens`.
    pub uri: String,
}

/// A new token and its hash: 32 random bytes, hex, after [`TOKEN_PREFIX`].
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("{TOKEN_PREFIX}{hex}");
    let sha256 = hash_key(&token);
    (token, sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let (a, a_hash) = new_token();
        let (b, _) = new_token();
        assert!(a.starts_with("igt_") && a.len() == 4 + 64, "{a}");
        assert_ne!(a, b);
        assert_eq!(a_hash, hash_key(&a));
        assert_eq!(a_hash.len(), 64);
    }

    #[test]
    fn the_created_answer_is_flat() {
        let created = CreatedAuthtoken {
            authtoken: AuthtokenView {
                id: "at_1".into(),
                uri: "/authtokens/at_1".into(),
                description: "ci".into(),
                created_at: "2025-01-01T00:00:00.000Z".into(),
            },
            token: "igt_x".into(),
        };
        let json = serde_json::to_value(&created).unwrap();
        assert_eq!(json["id"], "at_1");
        assert_eq!(json["token"], "igt_x");
        assert_eq!(json["description"], "ci");
    }
}
