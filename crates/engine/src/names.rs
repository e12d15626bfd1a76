//! Random container names in Docker's `adjective_surname` style, so `ps` reads the way users expect.
use rand::seq::SliceRandom;

const LEFT: &[&str] = &[
    "admiring", "amazing", "bold", "brave", "busy", "calm", "clever", "cool", "dazzling", "eager",
    "ecstatic", "elegant", "epic", "festive", "focused", "friendly", "gallant", "gifted", "happy",
    "hopeful", "jolly", "keen", "kind", "laughing", "lucid", "magical", "modest", "nice", "nifty",
    "optimistic", "peaceful", "quirky", "relaxed", "serene", "sharp", "stoic", "sweet", "tender",
    "trusting", "upbeat", "vibrant", "wizardly", "youthful", "zealous",
];

const RIGHT: &[&str] = &[
    "agnesi", "albattani", "allen", "archimedes", "babbage", "banach", "bardeen", "bell", "bohr",
    "borg", "cerf", "curie", "darwin", "dijkstra", "einstein", "euler", "faraday", "fermat",
    "feynman", "gauss", "goldberg", "hamilton", "hopper", "hypatia", "kepler", "knuth", "lamport",
    "liskov", "lovelace", "mccarthy", "meitner", "newton", "noether", "pascal", "ritchie", "shannon",
    "thompson", "torvalds", "turing", "wozniak", "yalow",
];

/// A fresh name; `retry` > 0 appends a digit, as Docker does after a collision.
pub fn random_name(retry: u32) -> String {
    let mut rng = rand::thread_rng();
    let l = LEFT.choose(&mut rng).copied().unwrap_or("brave");
    let r = RIGHT.choose(&mut rng).copied().unwrap_or("turing");
    if retry == 0 {
        format!("{l}_{r}")
    } else {
        format!("{l}_{r}{retry}")
    }
}

/// Docker's rule for user-given names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid() {
        for i in 0..20 {
            assert!(valid_name(&random_name(i % 2)));
        }
    }

    #[test]
    fn names_follow_dockers_grammar() {
        assert!(valid_name("web"));
        assert!(valid_name("a.b-c_d"));
        assert!(!valid_name("-web"));
        assert!(!valid_name("w"));
        assert!(!valid_name("we b"));
    }
}
