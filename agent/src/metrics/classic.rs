//! The classic Prometheus text format (version 0.0.4), derived from the
//! OpenMetrics text the registry encodes, for scrapers and tools that read
//! only the classic format (`promtool check metrics`, older Prometheus).
//!
//! The two formats differ, for what the agent exposes, in three places:
//! - a counter family: OpenMetrics names the family without its suffix
//!   (`# TYPE dropscope_drops counter`) and the samples with it
//!   (`dropscope_drops_total`); the classic format names all three alike, so
//!   the `HELP` and `TYPE` lines of a counter family get the `_total` name;
//! - `# UNIT` lines do not exist in the classic format: dropped (the unit is
//!   already part of the name);
//! - the `# EOF` end marker does not either: dropped.
//!
//! Everything else (gauges, samples, label escaping, help texts) is the
//! same in both and passes unchanged. Not handled, because the agent's
//! registry has none of them: exemplars, `_created` samples, and the
//! OpenMetrics-only types (`info`, `stateset`, `gaugehistogram`, `unknown`).

use std::collections::HashSet;

/// The content type of the classic text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The suffix of every OpenMetrics counter sample.
const COUNTER_SUFFIX: &str = "_total";

/// The classic text format of `openmetrics`, an OpenMetrics text exposition.
pub fn from_openmetrics(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| {
            let (name, kind) = line.strip_prefix("# TYPE ")?.split_once(' ')?;
            (kind == "counter").then_some(name)
        })
        .collect();
    let mut classic =
        String::with_capacity(openmetrics.len() + 2 * counters.len() * COUNTER_SUFFIX.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        match descriptor(line) {
            Some((keyword, name, rest)) if counters.contains(name) => {
                classic.push_str(keyword);
                classic.push_str(name);
                classic.push_str(COUNTER_SUFFIX);
                classic.push_str(rest);
            }
            _ => classic.push_str(line),
        }
        classic.push('\n');
    }
    classic
}

/// A `# HELP` or `# TYPE` line split into the keyword (with its `# ` and
/// the space after it), the family name, and the rest (from the space
/// after the name, if any).
fn descriptor(line: &str) -> Option<(&str, &str, &str)> {
    let keyword_end = ["# HELP ", "# TYPE "]
        .into_iter()
        .find(|keyword| line.starts_with(keyword))?
        .len();
    let (keyword, after) = line.split_at(keyword_end);
    let name_end = after.find(' ').unwrap_or(after.len());
    let (name, rest) = after.split_at(name_end);
    Some((keyword, name, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_family_is_named_like_its_samples() {
        let openmetrics = "# HELP dropscope_drops Dropped packets.\n\
                           # TYPE dropscope_drops counter\n\
                           dropscope_drops_total{reason=\"NETFILTER_DROP\"} 3\n\
                           # EOF\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            "# HELP dropscope_drops_total Dropped packets.\n\
             # TYPE dropscope_drops_total counter\n\
             dropscope_drops_total{reason=\"NETFILTER_DROP\"} 3\n"
        );
    }

    #[test]
    fn a_counter_with_a_unit_loses_the_unit_line() {
        let openmetrics = "# HELP run_time_seconds Time spent.\n\
                           # TYPE run_time_seconds counter\n\
                           # UNIT run_time_seconds seconds\n\
                           run_time_seconds_total{program=\"kfree_skb\"} 0.25\n\
                           # EOF\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            "# HELP run_time_seconds_total Time spent.\n\
             # TYPE run_time_seconds_total counter\n\
             run_time_seconds_total{program=\"kfree_skb\"} 0.25\n"
        );
    }

    #[test]
    fn gauges_and_samples_pass_unchanged() {
        let openmetrics = "# HELP active_flows Dropped flows tracked now.\n\
                           # TYPE active_flows gauge\n\
                           active_flows 6\n\
                           # HELP build_info Always 1.\n\
                           # TYPE build_info gauge\n\
                           build_info{version=\"0.1.0\"} 1\n\
                           # EOF\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            openmetrics.strip_suffix("# EOF\n").expect("an EOF marker")
        );
    }

    #[test]
    fn only_the_counter_family_is_renamed_not_one_sharing_its_prefix() {
        let openmetrics = "# HELP drops Packets.\n\
                           # TYPE drops counter\n\
                           drops_total 1\n\
                           # HELP drops_now Packets now.\n\
                           # TYPE drops_now gauge\n\
                           drops_now 2\n\
                           # HELP drop_flows Flows.\n\
                           # TYPE drop_flows counter\n\
                           drop_flows_total 3\n\
                           # EOF\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            "# HELP drops_total Packets.\n\
             # TYPE drops_total counter\n\
             drops_total 1\n\
             # HELP drops_now Packets now.\n\
             # TYPE drops_now gauge\n\
             drops_now 2\n\
             # HELP drop_flows_total Flows.\n\
             # TYPE drop_flows_total counter\n\
             drop_flows_total 3\n"
        );
    }

    #[test]
    fn an_empty_help_text_and_odd_label_values_are_kept_as_they_are() {
        let openmetrics = "# HELP calls \n\
                           # TYPE calls counter\n\
                           calls_total{path=\"# EOF\",quote=\"a\\\"b\\\\c\\nd\"} 1\n\
                           # EOF\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            "# HELP calls_total \n\
             # TYPE calls_total counter\n\
             calls_total{path=\"# EOF\",quote=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn an_empty_exposition_stays_empty() {
        assert_eq!(from_openmetrics("# EOF\n"), "");
        assert_eq!(from_openmetrics(""), "");
    }
}
