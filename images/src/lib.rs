//! Turns an image reference into a root filesystem on disk.
//!
//! [`ImageStore::pull`] fetches an image over the OCI distribution API (an image manifest,
//! OCI or Docker schema 2, or an index resolved to this machine's platform), verifies the
//! digest and size of every manifest and blob it fetches, and unpacks the layers (tar, gzip
//! or zstd; whiteouts, hard links, symlinks; nothing may escape the root) into a
//! content-addressed cache: one directory per image manifest digest, created whole by a
//! rename and never written again. [`ImageStore::remove_unused`] collects the rest.
//!
//! The API blocks (network and disk): async callers run it in `spawn_blocking`. One
//! [`ImageStore`] may serve many threads; only one may be open on a directory.
//!
//! ```no_run
//! # fn main() -> Result<(), images::Error> {
//! let store = images::ImageStore::open(std::path::Path::new("/data/images"))?;
//! let image = store.pull(
//!     "localhost:8080/artifacts/default/app:v1",
//!     &images::Auth::basic("deployment", "<token>"),
//! )?;
//! println!("{} at {}: {:?}", image.digest, image.rootfs.display(), image.config.cmd);
//! store.remove_unused(&[image.digest.as_str()])?;
//! # Ok(())
//! # }
//! ```

mod digest;
mod error;
mod manifest;
mod reference;
mod registry;
mod store;
mod unpack;

pub use error::{Error, Result};
pub use manifest::{ImageConfig, host_architecture};
pub use reference::Reference;
pub use registry::{Auth, Remote};
pub use store::{Image, ImageStore};
