//! The test workloads (`alien-test-web`, `alien-test-worker`, `alien-test-daemon`) packed as
//! OCI images: the program and the shared libraries it loads, its version in the image's
//! command, pushed to a manager's `/v2` with skopeo as a vendor pushes a release's images.

use std::collections::BTreeMap;
use std::path::Path;

use images::ImageConfig;

use crate::api::Api;
use crate::images::{Compression, Entry, Layer, OciImage};
use crate::registry::{Oci, REPOSITORY};
use crate::worker_runtime::workload;

/// An image that runs `program` (a test workload) as `/app/<program> --version <version>`,
/// with `extra` arguments after.
pub fn image(program: &str, version: &str, extra: &[&str]) -> OciImage {
    image_with(Compression::Gzip, program, version, extra)
}

/// [`image`] with its layer compressed as `compression` says (`docker save` writes plain
/// tars).
pub fn image_with(
    compression: Compression,
    program: &str,
    version: &str,
    extra: &[&str],
) -> OciImage {
    let binary = workload(program);
    let inside = format!("app/{program}");
    let mut entries = vec![
        Entry::dir("app", 0o755),
        Entry::File {
            path: inside.clone(),
            data: std::fs::read(&binary).expect("read the workload"),
            mode: 0o755,
        },
    ];
    let ldd = std::process::Command::new("ldd")
        .arg(&binary)
        .output()
        .expect("run ldd");
    let mut dirs = std::collections::BTreeSet::new();
    for library in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
    {
        let path = library.trim_start_matches('/');
        let mut parent = Path::new(path).parent();
        let mut chain = Vec::new();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            chain.push(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
        for dir in chain.into_iter().rev() {
            if dirs.insert(dir.clone()) {
                entries.push(Entry::dir(&dir, 0o755));
            }
        }
        entries.push(Entry::File {
            path: path.to_owned(),
            data: std::fs::read(library).expect("read a library"),
            mode: 0o755,
        });
    }
    let mut cmd = vec![format!("/{inside}"), "--version".into(), version.into()];
    cmd.extend(extra.iter().map(|s| (*s).to_owned()));
    let run = ImageConfig {
        cmd,
        working_dir: "/app".into(),
        labels: BTreeMap::from([("version".to_owned(), version.to_owned())]),
        ..ImageConfig::default()
    };
    OciImage::build(&[Layer::new(compression, entries)], &run)
}

/// Pushes [`image`] to the manager's registry as the admin; returns the reference a stack
/// names it by.
pub fn push(api: &Api, program: &str, version: &str, extra: &[&str]) -> String {
    push_via(api, Oci::new(api).host(), program, version, extra)
}

/// [`push`] through `host`, another way to the manager (a TLS front, say), which the
/// returned reference names.
pub fn push_via(api: &Api, host: &str, program: &str, version: &str, extra: &[&str]) -> String {
    let repo = format!("{REPOSITORY}/{program}");
    let tag = if extra.is_empty() {
        version.to_owned()
    } else {
        // A tag is `[A-Za-z0-9_.-]`; the arguments only need to give a distinct one.
        let extra: String = extra
            .join("-")
            .trim_start_matches('-')
            .replace("--", "")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let mut tag = format!("{version}-{extra}");
        tag.truncate(128);
        tag
    };
    let scratch = api.server().work_dir().join("images");
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    image(program, version, extra).push(
        host,
        &repo,
        &tag,
        &format!("token:{}", api.admin_token()),
        &scratch,
    );
    format!("{host}/{repo}:{tag}")
}
