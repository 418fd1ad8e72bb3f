//! `--partition count:K/N | hash:K/N | slice:K/N`: which tests one CI machine of N runs, with
//! cargo-nextest's meanings, so that N machines together run every test exactly once.

use std::fmt;
use std::str::FromStr;

/// One slice of the tests, `shard` counting from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    pub kind: Kind,
    pub shard: u64,
    pub total: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Round-robin within each test executable: its 1st test to shard 1, its 2nd to shard 2, …
    Count,
    /// By a hash of the test's id: a test stays in its shard when others are added or removed.
    Hash,
    /// Round-robin over the tests of all executables in turn (evens out many small executables).
    Slice,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("expected `count:K/N`, `hash:K/N` or `slice:K/N`, got `{0}`")]
    Syntax(String),
    #[error("unknown partition kind `{0}`: use count, hash or slice")]
    Kind(String),
    #[error("shard {shard} of {total}: need 1 ≤ K ≤ N")]
    Range { shard: u64, total: u64 },
}

impl FromStr for Partition {
    type Err = PartitionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || PartitionError::Syntax(text.to_owned());
        let (kind, fraction) = text.split_once(':').ok_or_else(syntax)?;
        let (shard, total) = fraction.split_once('/').ok_or_else(syntax)?;
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| syntax());
        let (shard, total) = (number(shard)?, number(total)?);
        let kind = match kind.trim() {
            "count" => Kind::Count,
            "hash" => Kind::Hash,
            "slice" => Kind::Slice,
            other => return Err(PartitionError::Kind(other.to_owned())),
        };
        if shard == 0 || shard > total {
            return Err(PartitionError::Range { shard, total });
        }
        Ok(Self { kind, shard, total })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Count => "count",
            Kind::Hash => "hash",
            Kind::Slice => "slice",
        };
        write!(f, "{kind}:{}/{}", self.shard, self.total)
    }
}

impl Partition {
    /// For each executable's tests (ids, in the order the executable lists them, after every
    /// other filter), whether this shard runs them. An executable that is not a libtest harness
    /// comes as one entry, its target name: it runs whole, on one shard.
    pub fn select(&self, executables: &[Vec<&str>]) -> Vec<Vec<bool>> {
        let mut across = 0u64;
        executables
            .iter()
            .map(|tests| {
                tests
                    .iter()
                    .enumerate()
                    .map(|(within, id)| {
                        let bucket = match self.kind {
                            Kind::Count => within as u64,
                            Kind::Slice => {
                                across += 1;
                                across - 1
                            }
                            // xxh64 with seed 0: the same on every machine and in every version.
                            Kind::Hash => xxhash_rust::xxh64::xxh64(id.as_bytes(), 0),
                        };
                        bucket % self.total == self.shard - 1
                    })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(kind: Kind, total: u64, executables: &[Vec<&str>]) -> Vec<Vec<Vec<bool>>> {
        (1..=total)
            .map(|shard| Partition { kind, shard, total }.select(executables))
            .collect()
    }

    fn executables() -> Vec<Vec<&'static str>> {
        vec![
            vec!["a::t1", "a::t2", "a::t3"],
            vec!["b::t1"],
            vec![],
            vec!["c::t1", "c::t2", "c::t3", "c::t4", "c::t5"],
        ]
    }

    #[test]
    fn parses_the_three_kinds_and_rejects_the_rest() {
        let p: Partition = "hash:2/3".parse().unwrap();
        assert_eq!((p.kind, p.shard, p.total), (Kind::Hash, 2, 3));
        assert_eq!("count:1/1".parse::<Partition>().unwrap().kind, Kind::Count);
        assert_eq!(
            "slice:4/4".parse::<Partition>().unwrap().to_string(),
            "slice:4/4"
        );
        assert_eq!(
            "count:0/2".parse::<Partition>(),
            Err(PartitionError::Range { shard: 0, total: 2 })
        );
        assert_eq!(
            "count:3/2".parse::<Partition>(),
            Err(PartitionError::Range { shard: 3, total: 2 })
        );
        assert!(matches!(
            "random:1/2".parse::<Partition>(),
            Err(PartitionError::Kind(_))
        ));
        for bad in ["count", "count:1", "count:a/2", "1/2", "count:1/2/3"] {
            assert!(
                matches!(bad.parse::<Partition>(), Err(PartitionError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_kind_gives_each_test_to_exactly_one_shard() {
        let executables = executables();
        for kind in [Kind::Count, Kind::Hash, Kind::Slice] {
            for total in 1..=6 {
                let shards = all(kind, total, &executables);
                for (e, tests) in executables.iter().enumerate() {
                    for t in 0..tests.len() {
                        let owners = shards.iter().filter(|s| s[e][t]).count();
                        assert_eq!(owners, 1, "{kind:?} {total}: {}", tests[t]);
                    }
                }
            }
        }
    }

    #[test]
    fn count_restarts_in_each_executable_and_slice_does_not() {
        let executables = executables();
        let count = Partition {
            kind: Kind::Count,
            shard: 1,
            total: 2,
        };
        assert_eq!(
            count.select(&executables),
            vec![
                vec![true, false, true],
                vec![true],
                vec![],
                vec![true, false, true, false, true]
            ]
        );
        let slice = Partition {
            kind: Kind::Slice,
            shard: 1,
            total: 2,
        };
        assert_eq!(
            slice.select(&executables),
            vec![
                vec![true, false, true],
                vec![false],
                vec![],
                vec![true, false, true, false, true]
            ]
        );
    }

    #[test]
    fn hash_depends_on_the_id_alone_and_never_moves() {
        let shard_of = |among: &[Vec<&str>], at: (usize, usize)| {
            (1..=3)
                .find(|&shard| {
                    let p = Partition {
                        kind: Kind::Hash,
                        shard,
                        total: 3,
                    };
                    p.select(among)[at.0][at.1]
                })
                .unwrap()
        };
        // xxh64 (seed 0) of "c::t3" is 16986875507565423694 (the Python `xxhash` package agrees):
        // ≡ 1 (mod 3), shard 2, alone or among others. A change here moves tests between CI machines.
        assert_eq!(shard_of(&[vec!["c::t3"]], (0, 0)), 2);
        assert_eq!(shard_of(&executables(), (3, 2)), 2);
        assert_eq!(shard_of(&[vec!["ledger::tests::deposit"]], (0, 0)), 3);
    }
}
