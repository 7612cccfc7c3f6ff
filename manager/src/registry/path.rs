//! What a `/v2` request names (docs/compatibility.md, Registry proxy): the endpoint, the
//! repository it is in, and the query parameters the proxy reads or removes.
//!
//! A path is parsed from its end, exactly as registryd parses it (`registryd/src/routes`), so
//! that the repository the proxy authorizes is the one registryd acts on. Names have any
//! number of components, and a component may itself be `manifests` or `blobs`:
//! `/v2/x/manifests/manifests/latest` is the manifest `latest` of `x/manifests`. The public
//! manager's "the path up to the first `/manifests/`" would authorize `x` for it, and let a
//! token that may pull `x` read `x/manifests`. Names are not checked against the distribution
//! grammar here: registryd refuses a bad one (`NAME_INVALID`), and a bad name matches no
//! reference a release holds.

/// Where a `/v2` path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `/v2` or `/v2/`: the version check.
    Base,
    /// `/v2/_catalog`: every repository.
    Catalog,
    /// Something in one repository.
    In(&'a str, Resource<'a>),
    /// A path registryd has no endpoint at.
    Unknown,
}

/// What in a repository a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// `<name>/blobs/<digest>`
    Blob,
    /// `<name>/blobs/uploads/`
    UploadStart,
    /// `<name>/blobs/uploads/<id>`: an upload session, by its (still percent-encoded) id.
    Upload(&'a str),
    /// `<name>/manifests/<reference>`
    Manifest,
    /// `<name>/tags/list`
    Tags,
    /// `<name>/referrers/<digest>`
    Referrers,
}

impl<'a> Endpoint<'a> {
    /// The endpoint of a request's path, as it came (not percent-decoded).
    pub fn parse(path: &'a str) -> Endpoint<'a> {
        let Some(rest) = path.strip_prefix("/v2") else {
            return Endpoint::Unknown;
        };
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Endpoint::Base;
        }
        if rest == "_catalog" {
            return Endpoint::Catalog;
        }
        if let Some(name) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return Endpoint::In(name, Resource::UploadStart);
        }
        let Some((head, tail)) = rest.rsplit_once('/') else {
            return Endpoint::Unknown;
        };
        if let Some(name) = head.strip_suffix("/blobs/uploads") {
            return Endpoint::In(name, Resource::Upload(tail));
        }
        if tail == "list"
            && let Some(name) = head.strip_suffix("/tags")
        {
            return Endpoint::In(name, Resource::Tags);
        }
        let Some((name, kind)) = head.rsplit_once('/') else {
            return Endpoint::Unknown;
        };
        match kind {
            "blobs" => Endpoint::In(name, Resource::Blob),
            "manifests" => Endpoint::In(name, Resource::Manifest),
            "referrers" => Endpoint::In(name, Resource::Referrers),
            _ => Endpoint::Unknown,
        }
    }
}

/// A query string as its `name=value` pairs, still encoded, so that the pairs the proxy
/// does not touch are forwarded byte for byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawQuery<'a>(Vec<(&'a str, &'a str)>);

impl<'a> RawQuery<'a> {
    pub fn parse(query: Option<&'a str>) -> RawQuery<'a> {
        RawQuery(
            query
                .unwrap_or("")
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .collect(),
        )
    }

    /// The first value of `name`, percent-decoded; `None` when absent or not UTF-8.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| plumbing::percent::decode(value))
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(key, _)| *key == name)
    }

    /// The query without the pairs `drop` names, as it came; `None` when nothing is left.
    pub fn without(&self, drop: impl Fn(&str) -> bool) -> Option<String> {
        let kept: Vec<String> = self
            .0
            .iter()
            .filter(|(key, _)| !drop(key))
            .map(|(key, value)| {
                if value.is_empty() {
                    (*key).to_owned()
                } else {
                    format!("{key}={value}")
                }
            })
            .collect();
        (!kept.is_empty()).then(|| kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint::*;
    use super::Resource::*;
    use super::*;

    #[test]
    fn paths_name_the_repository_registryd_acts_on() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let blob = format!("/v2/a/b/c/blobs/{d}");
        let referrers = format!("/v2/r/referrers/{d}");
        let cases: Vec<(&str, Endpoint<'_>)> = vec![
            ("/v2/", Base),
            ("/v2", Base),
            ("/v2/_catalog", Catalog),
            ("/v2/a/b/blobs/uploads/", In("a/b", UploadStart)),
            ("/v2/a/blobs/uploads", In("a", UploadStart)),
            (
                "/v2/artifacts/default/blobs/uploads/0af3",
                In("artifacts/default", Upload("0af3")),
            ),
            (
                "/v2/a/blobs/blobs/uploads/xyz",
                In("a/blobs", Upload("xyz")),
            ),
            (&blob, In("a/b/c", Blob)),
            (
                "/v2/x/manifests/manifests/latest",
                In("x/manifests", Manifest),
            ),
            ("/v2/x/manifests/sha256%3Aab", In("x", Manifest)),
            ("/v2/x/blobs/manifests/v1", In("x/blobs", Manifest)),
            ("/v2/tags/tags/list", In("tags", Tags)),
            ("/v2/a/tags/list/tags/list", In("a/tags/list", Tags)),
            (&referrers, In("r", Referrers)),
            // Not checked here: registryd refuses these names.
            ("/v2/a/../b/manifests/latest", In("a/../b", Manifest)),
            ("/v2/A/%2e%2e/manifests/v1", In("A/%2e%2e", Manifest)),
            ("/v2//blobs/uploads/", In("", UploadStart)),
            ("/v2/a/nothing", Unknown),
            ("/v2/a", Unknown),
            ("/v2/a/b/c", Unknown),
            ("/v2/tags/list", Unknown),
            ("/v2/blobs/uploads", Unknown),
            ("/v3/a/manifests/v1", Unknown),
            // As registryd reads it; the router sends only `/v2/...` here.
            ("/v2a/manifests/v1", In("a", Manifest)),
        ];
        for (path, want) in cases {
            assert_eq!(Endpoint::parse(path), want, "{path}");
        }
    }

    #[test]
    fn queries_keep_what_they_do_not_touch() {
        let q = RawQuery::parse(Some(
            "digest=sha256%3Aab&_alien_v=1&_alien_repo=a%2Fb&from=x%2Fy&flag&&n=2",
        ));
        assert_eq!(q.get("digest").as_deref(), Some("sha256:ab"));
        assert_eq!(q.get("_alien_repo").as_deref(), Some("a/b"));
        assert_eq!(q.get("missing"), None);
        assert!(q.has("flag") && !q.has("missing"));
        assert_eq!(
            q.without(|k| k.starts_with("_alien_")).as_deref(),
            Some("digest=sha256%3Aab&from=x%2Fy&flag&n=2")
        );
        assert_eq!(q.without(|_| true), None);
        assert_eq!(RawQuery::parse(None).without(|_| false), None);
        assert_eq!(RawQuery::parse(Some("v=%zz")).get("v"), None);
        assert_eq!(
            RawQuery::parse(Some("t=a+b%2Bc")).get("t").as_deref(),
            Some("a+b+c")
        );
    }
}
