//! Command ids (`cmd_` and 28 of `[0-9a-z]`, as the public manager makes them) and lease ids
//! (`lease_` and a
//! hyphenated UUID v4).

use crate::Error;

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const LENGTH: usize = 28;

pub fn command() -> Result<String, Error> {
    // Bytes at or past the last whole multiple of the alphabet's size would make its first
    // characters likelier; they are drawn again.
    let accept_below = 256 - 256 % ALPHABET.len();
    let mut id = String::from("cmd_");
    let mut random = [0u8; 2 * LENGTH];
    while id.len() < 4 + LENGTH {
        getrandom::fill(&mut random).map_err(Error::Random)?;
        let wanted = 4 + LENGTH - id.len();
        id.extend(
            random
                .iter()
                .map(|&b| usize::from(b))
                .filter(|&b| b < accept_below)
                .map(|b| char::from(ALPHABET[b % ALPHABET.len()]))
                .take(wanted),
        );
    }
    Ok(id)
}

pub fn lease() -> Result<String, Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(Error::Random)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "lease_{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = command().expect("id");
        assert_eq!(id.len(), 32);
        assert!(id[4..].bytes().all(|b| ALPHABET.contains(&b)));
        let lease = lease().expect("lease");
        let uuid = lease.strip_prefix("lease_").expect("prefix");
        let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&uuid[14..15], "4");
    }
}
