//! Standard lcov tracefile output (`SF`, `FN`/`FNDA`, `BRDA`/`BRF`/`BRH`, `DA`, `LF`/`LH`,
//! `end_of_record`) with absolute paths, readable by genhtml, Coverage Gutters and codecov.

use std::fmt::Write;

use crate::coverage::Coverage;

pub fn render(coverage: &Coverage) -> String {
    let mut out = String::new();
    for file in &coverage.files {
        let _ = writeln!(out, "TN:\nSF:{}", file.path.display());
        for function in &file.functions {
            let _ = writeln!(out, "FN:{},{}", function.line, function.name);
        }
        for function in &file.functions {
            let _ = writeln!(out, "FNDA:{},{}", function.hits, function.name);
        }
        let hit_functions = file.functions.iter().filter(|f| f.hits > 0).count();
        let _ = writeln!(out, "FNF:{}\nFNH:{hit_functions}", file.functions.len());
        // One block per branch (its index on the line), branch 0 the side where the jump is
        // taken and 1 the fall-through; a `match` is one block with a branch per arm, in source
        // order. `-` when the block itself never ran, as geninfo writes.
        let mut blocks: Vec<(u32, u32, Vec<u64>)> = file
            .branches
            .iter()
            .map(|b| (b.line, b.index, vec![b.taken, b.not_taken]))
            .chain(
                file.matches
                    .iter()
                    .map(|m| (m.line, m.index, m.arms.iter().map(|a| a.hits).collect())),
            )
            .collect();
        blocks.sort_by_key(|&(line, index, _)| (line, index));
        for (line, index, counts) in &blocks {
            let never = counts.iter().all(|&c| c == 0);
            for (branch, count) in counts.iter().enumerate() {
                let count = if never {
                    "-".to_owned()
                } else {
                    count.to_string()
                };
                let _ = writeln!(out, "BRDA:{line},{index},{branch},{count}");
            }
        }
        if !blocks.is_empty() {
            let (hit, found) = file.branch_sides();
            let _ = writeln!(out, "BRF:{found}\nBRH:{hit}");
        }
        // Exact counts; a capped line's count is its lower bound (lcov has no way to say so).
        for line in &file.lines {
            let _ = writeln!(out, "DA:{},{}", line.line, line.hits);
        }
        let _ = writeln!(
            out,
            "LF:{}\nLH:{}\nend_of_record",
            file.coverable(),
            file.covered()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::{
        BranchCoverage, Construct, FileCoverage, FunctionCoverage, LineCoverage,
    };

    #[test]
    fn one_record_per_file_with_functions_branches_exact_line_counts_and_totals() {
        let coverage = Coverage {
            files: vec![FileCoverage {
                path: "/w/src/lib.rs".into(),
                lines: vec![
                    LineCoverage {
                        line: 3,
                        hits: 2,
                        capped: false,
                        tests: vec![],
                    },
                    LineCoverage {
                        line: 4,
                        hits: 0,
                        capped: false,
                        tests: vec![],
                    },
                    LineCoverage {
                        line: 5,
                        hits: 2_500_000,
                        capped: false,
                        tests: vec![],
                    },
                    LineCoverage {
                        line: 6,
                        hits: 40,
                        capped: true,
                        tests: vec![],
                    },
                ],
                functions: vec![FunctionCoverage {
                    name: "Ledger::deposit".into(),
                    line: 3,
                    end_line: 5,
                    hits: 2,
                    is_test: false,
                }],
                branches: [(3, 0, 2, 0), (3, 1, 0, 0), (5, 0, 7, 1)]
                    .into_iter()
                    .map(|(line, index, taken, not_taken)| BranchCoverage {
                        line,
                        index,
                        construct: Construct::If,
                        oriented: true,
                        taken,
                        not_taken,
                        capped: false,
                        tests: Vec::new(),
                    })
                    .collect(),
                // After the line's `if`: its second block.
                matches: vec![crate::coverage::MatchCoverage {
                    index: 1,
                    ..crate::coverage::test_data::match_of(5, &[(6, &[(0, 40)]), (7, &[])])
                }],
            }],
            tests: Vec::new(),
            // Only the int3 fallback's cap: no count is cut to it.
            count_cap: 10,
        };
        assert_eq!(
            render(&coverage),
            "TN:\nSF:/w/src/lib.rs\nFN:3,Ledger::deposit\nFNDA:2,Ledger::deposit\nFNF:1\nFNH:1\n\
             BRDA:3,0,0,2\nBRDA:3,0,1,0\nBRDA:3,1,0,-\nBRDA:3,1,1,-\nBRDA:5,0,0,7\nBRDA:5,0,1,1\n\
             BRDA:5,1,0,40\nBRDA:5,1,1,0\n\
             BRF:8\nBRH:4\n\
             DA:3,2\nDA:4,0\nDA:5,2500000\nDA:6,40\nLF:4\nLH:3\nend_of_record\n"
        );
    }
}
