//! Record ids in the public manager's nanoid format, `{prefix}_{28 chars}`.

use crate::Error;

const LENGTH: usize = 28;

const LOWER_ALPHANUMERIC: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

const ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub fn token() -> Result<String, Error> {
    generate("tok_", LOWER_ALPHANUMERIC)
}

pub fn deployment() -> Result<String, Error> {
    generate("dep_", LOWER_ALPHANUMERIC)
}

pub fn deployment_group() -> Result<String, Error> {
    generate("dg_", LOWER_ALPHANUMERIC)
}

pub fn release() -> Result<String, Error> {
    generate("rel_", ALPHANUMERIC)
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
    fn ids_have_their_prefix_and_28_characters_of_their_alphabet() {
        type Generator = fn() -> Result<String, Error>;
        let cases: [(Generator, &str, &[u8]); 4] = [
            (token, "tok_", LOWER_ALPHANUMERIC),
            (deployment, "dep_", LOWER_ALPHANUMERIC),
            (deployment_group, "dg_", LOWER_ALPHANUMERIC),
            (release, "rel_", ALPHANUMERIC),
        ];
        for (generate, prefix, alphabet) in cases {
            let id = generate().expect("random");
            let rest = id.strip_prefix(prefix).expect("prefix");
            assert_eq!(rest.len(), LENGTH, "{id}");
            assert!(rest.bytes().all(|b| alphabet.contains(&b)), "{id}");
            assert_ne!(generate().expect("random"), id);
        }
    }

    #[test]
    fn release_ids_use_both_cases() {
        let letters: String = (0..20)
            .map(|_| release().expect("random"))
            .flat_map(|id| id.chars().skip(4).collect::<Vec<_>>())
            .collect();
        assert!(letters.chars().any(|c| c.is_ascii_uppercase()), "{letters}");
        assert!(letters.chars().any(|c| c.is_ascii_lowercase()), "{letters}");
    }
}
