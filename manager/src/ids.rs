//! Record ids in the public manager's nanoid format, `{prefix}_{28 chars}` (spec §1.1).

use crate::Error;

const LENGTH: usize = 28;

const LOWER_ALPHANUMERIC: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

pub fn token() -> Result<String, Error> {
    generate("tok_", LOWER_ALPHANUMERIC)
}

fn generate(prefix: &str, alphabet: &'static [u8]) -> Result<String, Error> {
    // Bytes at or past the last whole multiple of the alphabet's size would make its first
    // characters likelier than the rest; they are drawn again instead.
    let accept_below = 256 - 256 % alphabet.len();
    let mut id = String::with_capacity(prefix.len() + LENGTH);
    id.push_str(prefix);
    let mut random = [0u8; 2 * LENGTH];
    while id.len() < prefix.len() + LENGTH {
        getrandom::fill(&mut random).map_err(Error::Random)?;
        let wanted = prefix.len() + LENGTH - id.len();
        id.extend(
            random
                .iter()
                .map(|&b| usize::from(b))
                .filter(|&b| b < accept_below)
                .map(|b| char::from(alphabet[b % alphabet.len()]))
                .take(wanted),
        );
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_tok_and_28_lowercase_alphanumerics() {
        let id = token().expect("random");
        let (prefix, rest) = id.split_at(4);
        assert_eq!(prefix, "tok_");
        assert_eq!(rest.len(), LENGTH);
        assert!(
            rest.bytes().all(|b| LOWER_ALPHANUMERIC.contains(&b)),
            "{id}"
        );
        assert_ne!(token().expect("random"), id);
    }
}
