//! Whether a deployment may pull from a repository: whether the release the manager assigned
//! it references it (the desired release it last reached, else its desired one; never the
//! current release its own reports name, which could be any: `deployments::pull_release_of`).
//!
//! Each request reads which release that is, so that a deployment that reaches a new
//! release pulls its images at once. The repositories a release references are kept per
//! release: releases never change, so the cache is never stale, and a layer pulled by a
//! deployment costs one indexed read rather than parsing its release's stacks again.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use super::images::release_repositories;
use crate::Error;
use crate::store::{Store, deployments, releases};

/// Releases whose repositories are kept; past this the cache starts over.
const MAX_CACHED: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    Allowed,
    /// The deployment's release does not reference the repository.
    NotReferenced,
    NoDeployment,
    /// The deployment has neither a reached nor a desired release (or it is gone).
    NoRelease,
}

#[derive(Debug, Default, Clone)]
pub struct ReleaseRepositories {
    cache: Arc<Mutex<HashMap<String, Arc<BTreeSet<String>>>>>,
}

impl ReleaseRepositories {
    pub async fn check(
        &self,
        store: &Store,
        deployment_id: &str,
        repository: &str,
    ) -> Result<Pull, Error> {
        let cache = self.cache.clone();
        let (deployment_id, repository) = (deployment_id.to_owned(), repository.to_owned());
        store
            .read(move |conn| {
                let release_id = match deployments::pull_release_of(conn, &deployment_id)? {
                    None => return Ok(Pull::NoDeployment),
                    Some(None) => return Ok(Pull::NoRelease),
                    Some(Some(id)) => id,
                };
                let cached = cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&release_id)
                    .cloned();
                let repositories = match cached {
                    Some(repositories) => repositories,
                    None => {
                        let Some(release) = releases::get(conn, &release_id)? else {
                            return Ok(Pull::NoRelease);
                        };
                        let stacks: Value = serde_json::from_str(release.stack.get())?;
                        let repositories = Arc::new(release_repositories(&stacks));
                        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
                        if cache.len() >= MAX_CACHED {
                            cache.clear();
                        }
                        cache.insert(release_id, repositories.clone());
                        repositories
                    }
                };
                Ok(if repositories.contains(&repository) {
                    Pull::Allowed
                } else {
                    Pull::NotReferenced
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::deployment_groups;
    use crate::store::deployments::NewDeployment;
    use crate::store::releases::NewRelease;
    use crate::wire::Platform;

    fn stacks(images: &[&str]) -> String {
        let resources: serde_json::Map<String, Value> = images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                let id = format!("w{i}");
                let config =
                    json!({"type": "worker", "id": id, "code": {"type": "image", "image": image}});
                (id, json!({"config": config}))
            })
            .collect();
        json!({"local": {"resources": resources}}).to_string()
    }

    #[tokio::test]
    async fn deployments_pull_what_their_reached_else_desired_release_references() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("manager.db"))
            .await
            .expect("open");
        store
            .transaction(|tx| {
                deployment_groups::insert(tx, "dg_1", "g", 10)?;
                for (id, images) in [
                    ("rel_one", vec!["h:1/artifacts/default/one:v1"]),
                    ("rel_two", vec!["h:1/artifacts/default/two:v1", "h:1/artifacts/default:x"]),
                ] {
                    let stack = stacks(&images);
                    releases::insert(
                        tx,
                        &NewRelease {
                            id,
                            project_id: "default",
                            stack: &stack,
                            git_commit_sha: None,
                            git_commit_ref: None,
                            git_commit_message: None,
                        },
                    )?;
                }
                for (id, desired) in [
                    ("dep_reached", Some("rel_two")),
                    ("dep_desired", Some("rel_two")),
                    ("dep_reporting", Some("rel_one")),
                    ("dep_none", None),
                    ("dep_gone_release", Some("rel_gone")),
                ] {
                    deployments::insert(
                        tx,
                        &NewDeployment {
                            id,
                            name: id,
                            deployment_group_id: "dg_1",
                            platform: Platform::Local,
                            base_platform: None,
                            stack_settings: "{}",
                            stack_state: None,
                            environment_variables: None,
                            input_values: None,
                            desired_release_id: desired,
                            deployment_token: "ax_deploy_test",
                        },
                    )?;
                }
                tx.execute(
                    "UPDATE deployments SET reached_release_id = 'rel_one' WHERE id = 'dep_reached'",
                    [],
                )?;
                // What a report names as current counts for nothing.
                tx.execute(
                    "UPDATE deployments SET current_release_id = 'rel_two' WHERE id IN ('dep_reached', 'dep_reporting')",
                    [],
                )?;
                Ok(())
            })
            .await
            .expect("setup");

        let pulls = ReleaseRepositories::default();
        let cases = [
            ("dep_reached", "artifacts/default/one", Pull::Allowed),
            ("dep_reached", "artifacts/default/two", Pull::NotReferenced),
            ("dep_reporting", "artifacts/default/one", Pull::Allowed),
            (
                "dep_reporting",
                "artifacts/default/two",
                Pull::NotReferenced,
            ),
            ("dep_desired", "artifacts/default/two", Pull::Allowed),
            ("dep_desired", "artifacts/default", Pull::Allowed),
            ("dep_desired", "artifacts/default/one", Pull::NotReferenced),
            (
                "dep_desired",
                "artifacts/default/two/more",
                Pull::NotReferenced,
            ),
            ("dep_none", "artifacts/default/one", Pull::NoRelease),
            ("dep_gone_release", "artifacts/default/one", Pull::NoRelease),
            ("dep_nope", "artifacts/default/one", Pull::NoDeployment),
        ];
        // Twice: the second time from the cache.
        for _ in 0..2 {
            for (deployment, repository, want) in cases {
                let got = pulls
                    .check(&store, deployment, repository)
                    .await
                    .expect("check");
                assert_eq!(got, want, "{deployment} pulling {repository}");
            }
        }
        let cached: BTreeSet<String> = pulls.cache.lock().expect("cache").keys().cloned().collect();
        assert_eq!(cached, ["rel_one", "rel_two"].map(str::to_owned).into());

        // A deployment that reaches another release pulls from it at once.
        store
            .transaction(|tx| {
                tx.execute(
                    "UPDATE deployments SET reached_release_id = 'rel_two' WHERE id = 'dep_reached'",
                    [],
                )?;
                Ok(())
            })
            .await
            .expect("move");
        let moved = pulls
            .check(&store, "dep_reached", "artifacts/default/two")
            .await
            .expect("check");
        assert_eq!(moved, Pull::Allowed);
    }
}
