//! The flags every command that quantizes shares: the scheme flags and the one
//! short-form parser. Every word they accept and list in `--help` comes from
//! the engine's vocabulary (`quantscope_engine::scheme::vocabulary`), so a new
//! format or calibration needs nothing here.

use clap::Args;
use clap::builder::{PossibleValue, TypedValueParser};
use quantscope_engine::scheme::{CALIBRATIONS, FORMATS, GRANULARITIES, MAPPINGS};
use quantscope_engine::{Calibration, FormatKind, Granularity, Mapping, Scheme};

/// A scheme in short form (`int4:group128:mse:asym`): the one parser of
/// `--scheme`, `--compare` and `--schemes`.
pub fn parse_scheme(s: &str) -> Result<Scheme, String> {
    s.parse().map_err(|e: quantscope_engine::Error| e.to_string())
}

/// A vocabulary word as given on the command line: the engine's value, and
/// whether it was a kind's bare name (`group`, `percentile`), whose number then
/// comes from its own flag (`--group-size`, `--percentile`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Word<T> {
    pub value: T,
    pub bare: bool,
}

/// A clap value parser over one of the engine's vocabulary lists: the engine
/// parses, the list names the values (with their descriptions) in `--help`.
#[derive(Clone, Copy)]
pub struct Vocabulary<T> {
    parse: fn(&str) -> Result<T, String>,
    values: fn() -> Vec<PossibleValue>,
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Vocabulary<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        self.parse.parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new((self.values)().into_iter()))
    }
}

/// `--format`: every format the engine lists (and the aliases it parses, `fp8`).
pub fn formats() -> Vocabulary<FormatKind> {
    Vocabulary {
        parse: |s| s.parse().map_err(|e: quantscope_engine::Error| e.to_string()),
        values: || FORMATS.iter().map(|f| PossibleValue::new(f.name).help(f.description)).collect(),
    }
}

/// `--mapping`: `symmetric` or `asymmetric` (or the short form's `sym`, `asym`).
pub fn mappings() -> Vocabulary<Mapping> {
    Vocabulary {
        parse: |s| s.parse().map_err(|e: quantscope_engine::Error| e.to_string()),
        values: || {
            MAPPINGS.iter().map(|m| PossibleValue::new(m.name).alias(m.short).help(m.description)).collect()
        },
    }
}

/// `--granularity`: a kind (`group`, sized by `--group-size`) or a short form (`group64`).
pub fn granularities() -> Vocabulary<Word<Granularity>> {
    Vocabulary {
        parse: |s| match GRANULARITIES.iter().find(|g| g.name == s) {
            Some(g) => Ok(Word { value: g.default, bare: true }),
            None => s
                .parse()
                .map(|value| Word { value, bare: false })
                .map_err(|e: quantscope_engine::Error| e.to_string()),
        },
        values: || GRANULARITIES.iter().map(|g| PossibleValue::new(g.name).help(g.description)).collect(),
    }
}

/// `--calibration`: a kind (`percentile`, at `--percentile`) or a short form (`p99.5`).
pub fn calibrations() -> Vocabulary<Word<Calibration>> {
    Vocabulary {
        parse: |s| {
            let bare = CALIBRATIONS.iter().any(|c| c.name == s);
            Calibration::parse_name_or_short(s)
                .map(|value| Word { value, bare })
                .map_err(|e: quantscope_engine::Error| e.to_string())
        },
        values: || CALIBRATIONS.iter().map(|c| PossibleValue::new(c.name).help(c.description)).collect(),
    }
}

/// The scheme flags, shared by every command that quantizes.
#[derive(Args, Debug, Clone)]
pub struct SchemeArgs {
    /// Number format (a microscaling format brings its own group and the symmetric mapping).
    #[arg(long, default_value = "int8", value_parser = formats())]
    pub format: FormatKind,
    /// Mapping (sym and asym also work) [default: symmetric, or the one the calibration needs:
    /// asymmetric for hqq]
    #[arg(long, value_parser = mappings())]
    pub mapping: Option<Mapping>,
    /// Granularity: a kind, sized by --axis, --group-size or --block-size, or a short form
    /// (channel1, group64, block128).
    #[arg(long, default_value = "channel", value_parser = granularities())]
    pub granularity: Word<Granularity>,
    /// Channel axis for --granularity channel.
    #[arg(long, default_value_t = 0)]
    pub axis: usize,
    /// Group size for --granularity group.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    pub group_size: u64,
    /// Tile side for --granularity block.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    pub block_size: u64,
    /// Calibration: a kind (percentile at --percentile) or a short form (p99.5, kl, ratio0.8).
    #[arg(long, default_value = "minmax", value_parser = calibrations())]
    pub calibration: Word<Calibration>,
    /// p for --calibration percentile, in percent (50 < p ≤ 100).
    #[arg(long, default_value_t = 99.9)]
    pub percentile: f64,
    #[arg(long, value_name = "SHORT", help = short_form_help())]
    pub scheme: Option<String>,
}

/// `--scheme`'s help, its words from the engine's lists.
fn short_form_help() -> String {
    let join = |words: Vec<&str>| words.join(", ");
    format!(
        "The whole scheme in short form, replacing the flags above: \
         format[:granularity[:calibration[:sym|asym]]], e.g. int8:channel:mse, e4m3:tensor:minmax, \
         int4:group128:p99.9:asym, nvfp4, e4m3:block128 (format: {}; granularity: {}; calibration: {})",
        join(FORMATS.iter().map(|f| f.name).collect()),
        join(GRANULARITIES.iter().map(|g| g.short).collect()),
        join(CALIBRATIONS.iter().map(|c| c.short).collect()),
    )
}

impl SchemeArgs {
    pub fn scheme(&self) -> anyhow::Result<Scheme> {
        if let Some(short) = &self.scheme {
            return Ok(short.parse()?);
        }
        // A bare kind takes its number from its own flag.
        let granularity = match self.granularity {
            Word { value: Granularity::Channel { .. }, bare: true } => {
                Granularity::Channel { axis: self.axis }
            }
            Word { value: Granularity::Group { .. }, bare: true } => {
                Granularity::Group { size: self.group_size as usize }
            }
            Word { value: Granularity::Block { .. }, bare: true } => {
                Granularity::Block { size: self.block_size as usize }
            }
            Word { value, .. } => value,
        };
        let calibration = match self.calibration {
            Word { value: Calibration::Percentile { .. }, bare: true } => {
                Calibration::Percentile { p: self.percentile }
            }
            Word { value, .. } => value,
        };
        let implied = calibration.info().mapping.unwrap_or_default();
        let mut scheme = Scheme {
            format: self.format,
            mapping: self.mapping.unwrap_or(implied),
            granularity,
            calibration,
        };
        // A microscaled format's group and mapping are part of the format.
        if let Some(g) = self.format.fixed_group() {
            scheme.granularity = Granularity::Group { size: g };
            scheme.mapping = Mapping::Symmetric;
        }
        scheme.validate()?;
        Ok(scheme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        scheme: SchemeArgs,
    }

    fn scheme(args: &[&str]) -> anyhow::Result<String> {
        let flags = Flags::try_parse_from(std::iter::once("x").chain(args.iter().copied()))?;
        Ok(flags.scheme.scheme()?.to_string())
    }

    #[test]
    fn flags_build_the_short_forms_scripts_use() {
        assert_eq!(scheme(&[]).unwrap(), "int8:channel:minmax");
        assert_eq!(scheme(&["--calibration", "hqq"]).unwrap(), "int8:channel:hqq:asym");
        assert_eq!(
            scheme(&["--format", "int4", "--granularity", "group", "--group-size", "64"]).unwrap(),
            "int4:group64:minmax"
        );
        assert_eq!(scheme(&["--granularity", "group32"]).unwrap(), "int8:group32:minmax");
        assert_eq!(
            scheme(&["--calibration", "percentile", "--percentile", "99"]).unwrap(),
            "int8:channel:p99"
        );
        assert_eq!(scheme(&["--calibration", "p99.5"]).unwrap(), "int8:channel:p99.5");
        assert_eq!(
            scheme(&["--calibration", "kl", "--mapping", "asym"]).unwrap(),
            "int8:channel:entropy:asym"
        );
        assert_eq!(scheme(&["--format", "fp8", "--granularity", "block"]).unwrap(), "e4m3:block128:minmax");
        assert_eq!(
            scheme(&["--format", "nvfp4", "--mapping", "asymmetric"]).unwrap(),
            "nvfp4:group16:minmax"
        );
        assert!(scheme(&["--calibration", "hqq", "--mapping", "symmetric"]).is_err());
        assert!(scheme(&["--calibration", "hqq", "--format", "e4m3"]).is_err());
        assert!(scheme(&["--format", "int9"]).is_err());
    }

    #[test]
    fn help_lists_the_engine_vocabulary() {
        let names = |v: Option<Box<dyn Iterator<Item = PossibleValue> + '_>>| {
            v.map(|i| i.map(|p| p.get_name().to_string()).collect::<Vec<_>>()).unwrap_or_default()
        };
        assert_eq!(names(formats().possible_values()), FORMATS.map(|f| f.name.to_string()));
        assert_eq!(names(calibrations().possible_values()), CALIBRATIONS.map(|c| c.name.to_string()));
        assert_eq!(names(granularities().possible_values()), GRANULARITIES.map(|g| g.name.to_string()));
        assert_eq!(names(mappings().possible_values()), MAPPINGS.map(|m| m.name.to_string()));
    }
}
