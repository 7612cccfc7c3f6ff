//! Header values of the distribution spec that both the routes and the error responses
//! write: [`crate::error`] answers a chunk out of order with the upload's range. Here rather
//! than in the routes, so that the error type every module uses depends on none of them.

use http::HeaderValue;

/// `0-<last byte>` for an upload of `length` bytes (`0-0` when empty, as clients expect).
pub fn upload_range(length: u64) -> HeaderValue {
    let end = length.saturating_sub(1);
    HeaderValue::from_str(&format!("0-{end}")).unwrap_or_else(|_| HeaderValue::from_static("0-0"))
}

#[cfg(test)]
mod tests {
    use super::upload_range;

    #[test]
    fn an_upload_range_names_its_last_byte() {
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(10), "0-9");
    }
}
