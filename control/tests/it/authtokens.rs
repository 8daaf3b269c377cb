//! Authtokens through the API and the CLI: made per account, secret shown once,
//! listed without it, revoked by id; a change to them pushes a table.

use innergate::authtoken::CreateAuthtoken;

use crate::support::*;

fn described(description: &str) -> CreateAuthtoken {
    CreateAuthtoken {
        description: Some(description.into()),
    }
}

/// A raw call; returns the status and the body as JSON (`Null` when empty).
fn call(
    control: &Control,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let request = ureq::request(method, &format!("{}{path}", control.api))
        .set("Authorization", &format!("Bearer {key}"));
    let result = match body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_string(body),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    let json = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, json)
}

#[test]
fn authtokens_are_made_listed_and_revoked_within_their_account() {
    let dir = tempfile::tempdir().unwrap();
    let mut control = Control::start(dir.path(), None);
    let key = control.account("alice");
    let api = control.client(&key);
    let ci = api.create_authtoken(&described("ci")).unwrap();
    assert!(ci.authtoken.id.starts_with("at_"), "{ci:?}");
    assert!(
        ci.token.starts_with("igt_") && ci.token.len() == 68,
        "{ci:?}"
    );
    assert_eq!(ci.authtoken.description, "ci");
    assert!(!ci.authtoken.created_at.is_empty());
    // The body is optional.
    let (status, bare) = call(&control, &key, "POST", "/authtokens", None);
    assert_eq!(status, 201, "{bare}");
    assert_eq!(bare["description"], "");
    assert!(bare["token"].as_str().unwrap().starts_with("igt_"));
    let bare_id = bare["id"].as_str().unwrap().to_string();

    // Listed newest first, and never with a secret or its hash.
    let (status, listed) = call(&control, &key, "GET", "/authtokens", None);
    assert_eq!(status, 200);
    let items = listed["authtokens"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [bare_id.as_str(), ci.authtoken.id.as_str()]);
    assert_eq!(items[1]["description"], "ci");
    for item in items {
        let mut fields: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        fields.sort();
        assert_eq!(fields, ["created_at", "description", "id", "uri"]);
    }
    let text = listed.to_string();
    assert!(
        !text.contains(&ci.token) && !text.contains("igt_"),
        "{text}"
    );

    // Another account sees none and revokes none.
    let bob = control.client(&control.account("bob"));
    assert!(bob.list_authtokens().unwrap().authtokens.is_empty());
    let e = bob.revoke_authtoken(&ci.authtoken.id).unwrap_err();
    assert_eq!((e.status_code, e.error_code.as_str()), (404, "ERR_IG_7006"));
    assert_eq!(api.list_authtokens().unwrap().authtokens.len(), 2);

    // Revoked: gone from the list; a second revoke finds nothing.
    let (status, body) = call(
        &control,
        &key,
        "DELETE",
        &format!("/authtokens/{}", ci.authtoken.id),
        None,
    );
    assert_eq!((status, body), (204, serde_json::Value::Null));
    let left: Vec<String> = api
        .list_authtokens()
        .unwrap()
        .authtokens
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(left, [bare_id.as_str()]);
    let e = api.revoke_authtoken(&ci.authtoken.id).unwrap_err();
    assert_eq!((e.status_code, e.error_code.as_str()), (404, "ERR_IG_7006"));
    assert!(e.msg.contains(&ci.authtoken.id), "{e}");

    // Kept across a restart.
    control.restart();
    let api = control.client(&key);
    let kept: Vec<String> = api
        .list_authtokens()
        .unwrap()
        .authtokens
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(kept, [bare_id]);
}

#[test]
fn bad_authtoken_calls_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start(dir.path(), None);
    let key = control.account("alice");
    let long = format!(r#"{{"description": "{}"}}"#, "x".repeat(256));
    let cases = [
        (r#"{"descripton": "typo"}"#, "descripton"),
        (r#"{"description": 7}"#, "description"),
        ("{", "as JSON"),
        (long.as_str(), "at most 255"),
    ];
    for (body, words) in cases {
        let (status, e) = call(&control, &key, "POST", "/authtokens", Some(body));
        assert_eq!(
            (status, &e["error_code"]),
            (400, &"ERR_IG_7002".into()),
            "{e}"
        );
        assert!(
            e["msg"].as_str().unwrap().contains(words),
            "{e} lacks {words}"
        );
    }
    assert!(control
        .client(&key)
        .list_authtokens()
        .unwrap()
        .authtokens
        .is_empty());
    for (method, path) in [
        ("POST", "/authtokens"),
        ("GET", "/authtokens"),
        ("DELETE", "/authtokens/at_x"),
    ] {
        let (status, e) = call(&control, "ig_wrong", method, path, None);
        assert_eq!(
            (status, &e["error_code"]),
            (401, &"ERR_IG_7000".into()),
            "{method} {path}"
        );
    }
}

#[test]
fn a_change_to_the_authtokens_pushes_a_new_table() {
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start(dir.path());
    let control = Control::start(&dir.path().join("control"), Some(&dp.socket));
    let api = control.client(&control.account("alice"));
    api.create(&cloud("http://app.example.com", HELLO)).unwrap();
    eventually("the data plane in sync", || {
        control.metric("innergate_control_data_plane_in_sync") == Some(1)
    });
    let before = dp.version();
    let created = api.create_authtoken(&described("laptop")).unwrap();
    eventually("a table pushed for the new token", || {
        dp.version() == before + 1
    });
    api.revoke_authtoken(&created.authtoken.id).unwrap();
    eventually("a table pushed for the revocation", || {
        dp.version() == before + 2
    });
    // The endpoints are what they were.
    assert_eq!(
        http_get(dp.http_addr(), "app.example.com").1,
        "Hello world!"
    );
}

fn authtokens(control: &Control, key: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["authtokens"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--api-url", &control.api, "--api-key", key]);
    run(&all)
}

#[test]
fn the_cli_creates_lists_and_revokes_authtokens() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start(dir.path(), None);
    let key = control.account("alice");
    let out = authtokens(&control, &key, &["create", "--description", "my laptop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout holds the token alone: {stdout:?}"
    );
    let token = stdout.trim();
    assert!(token.starts_with("igt_"), "{token}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let id = stderr
        .split_whitespace()
        .find(|w| w.starts_with("at_"))
        .unwrap_or_else(|| panic!("no id in {stderr:?}"))
        .trim_end_matches(';')
        .to_string();

    let out = authtokens(&control, &key, &["list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("ID"), "{text}");
    let row = lines.next().unwrap();
    assert!(row.starts_with(&id) && row.ends_with("my laptop"), "{row}");
    assert!(!text.contains(token), "{text}");

    let out = authtokens(&control, &key, &["list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["authtokens"][0]["id"], id.as_str());

    let out = authtokens(&control, &key, &["revoke", &id]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("revoked {id}")
    );
    let out = authtokens(&control, &key, &["list"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let again = authtokens(&control, &key, &["revoke", &id]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("ERR_IG_7006"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let no_key = run(&["authtokens", "list", "--api-url", &control.api]);
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("INNERGATE_API_KEY"));
}
