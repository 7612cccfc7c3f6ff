//! The running manager against the public manager's OpenAPI document, by schemathesis: for
//! every operation in scope (all but the commands API), generated requests never get a server
//! error, and every documented response matches its schema.
//!
//! `status_code_conformance` is not checked: the document lists only success codes for most
//! operations (e.g. `POST /v1/releases` documents 201 alone), while the manager it describes
//! answers 400/404/409/422 to requests it refuses, which generated data is full of.
//!
//! schemathesis comes from PyPI: `tests/schemathesis/install.sh` (run by `tests/run`) puts it
//! in `tests/schemathesis/.venv`. Without it this test fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::api::{Api, NewDeployment, string, tail};

/// Examples per operation and phase; bounded so that the run takes about a minute.
const MAX_EXAMPLES: &str = "25";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in the workspace")
        .to_path_buf()
}

fn schemathesis() -> PathBuf {
    let installed = workspace_root().join("tests/schemathesis/.venv/bin/st");
    if installed.exists() {
        return installed;
    }
    panic!(
        "schemathesis is not installed: run `tests/schemathesis/install.sh` (as `tests/run` does); looked for {}",
        installed.display()
    );
}

fn openapi_document() -> PathBuf {
    let document = workspace_root().join("../shared/reference/openapi.json");
    assert!(
        document.exists(),
        "the public manager's OpenAPI document is missing: {} (the shared/ folder beside the repository)",
        document.display()
    );
    document
}

#[test]
fn the_api_conforms_to_the_openapi_document() {
    let st = schemathesis();
    let document = openapi_document();
    let api = Api::start();
    // Something for the generated requests to find besides 404s: path ids are pinned to
    // these (one deployment for the delete operation, which may remove it).
    let group = api.create_group();
    let deployment = api.create_deployment(&group, NewDeployment::pull());
    let doomed = api.create_deployment(&group, NewDeployment::pull());
    let release = string(&api.create_release(&["local"]), "id");
    let config = api.server().work_dir().join("schemathesis.toml");
    let pinned = [
        (r"^/v1/deployments/\{id\}/delete$", doomed.id.as_str()),
        (
            r"^/v1/deployments/\{id\}(/info|/retry|/redeploy)?$",
            &deployment.id,
        ),
        (r"^/v1/deployment-groups/\{id\}", &group.id),
        (r"^/v1/releases/\{id\}$", &release),
    ];
    let toml: String = pinned
        .iter()
        .map(|(path, id)| {
            format!("[[operations]]\ninclude-path-regex = '{path}'\nparameters = {{ \"path.id\" = \"{id}\" }}\n\n")
        })
        .collect();
    std::fs::write(&config, toml).expect("write schemathesis.toml");

    let args = [
        "--config-file".to_owned(),
        config.display().to_string(),
        "run".into(),
        document.display().to_string(),
        "--url".into(),
        api.base_url(),
        "--header".into(),
        format!("Authorization: Bearer {}", api.admin_token()),
        "--checks".into(),
        "not_a_server_error,response_schema_conformance".into(),
        "--exclude-path-regex".into(),
        "^/v1/commands".into(),
        "--phases".into(),
        "examples,coverage,fuzzing".into(),
        "--max-examples".into(),
        MAX_EXAMPLES.into(),
        "--seed".into(),
        "1".into(),
        "--workers".into(),
        "2".into(),
        "--request-timeout".into(),
        "10".into(),
        "--no-color".into(),
    ];
    let output = Command::new(&st)
        .args(&args)
        .current_dir(api.server().work_dir())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", st.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems ({}):\n{} {}\n{}\n{}\nserver stderr (tail):\n{}",
        output.status,
        st.display(),
        args.join(" "),
        tail(&stdout, 400),
        tail(&stderr, 40),
        tail(&api.server().stderr(), 40)
    );
    // What was run and found, for `--nocapture`.
    println!("{}", tail(&stdout, 25));
}
