//! C2SP tlog-tiles paths and entry bundles (c2sp.org/tlog-tiles): the static read path
//! through which anyone mirrors a node's log over plain HTTP.
//!
//! A log is served as `checkpoint`, hash tiles `tile/<L>/<N>[.p/<W>]` and entry bundles
//! `tile/entries/<N>[.p/<W>]`. `<L>` is decimal 0 to 63 without leading zeros; `<N>` is
//! written in 3-digit groups, every group but the last prefixed with `x` (1234067 is
//! `x001/x234/067`); `<W>` is decimal 1 to 255 without leading zeros and only names a
//! partial tile. Tile `L/N` holds the 256 node hashes of tree level `8 L` from index
//! `256 N` (32 bytes each); the partial tile of a tree of `s` entries at level `L` has
//! `floor(s / 256^L) mod 256` hashes. An entry bundle holds entries `256 N ..` each as a
//! big-endian `u16` length and the entry's bytes.
//!
//! A request path is untrusted input: [`parse`] accepts exactly the canonical spelling
//! of each tile (so every tile has one path) and nothing else, with bounded work.
//!
//! Architecture invariant: pure functions over text and bytes; no I/O.

use crate::merkle::Hash;

/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 256;
/// Bytes of one hash in a tile.
pub const HASH_BYTES: usize = 32;
/// Tiles are 8 tree levels high: tile level `L` holds tree level `8 L`.
pub const TILE_HEIGHT: u32 = 8;
/// Largest entry an entry bundle can hold (its length prefix is a `u16`).
pub const MAX_BUNDLE_ENTRY: usize = u16::MAX as usize;
/// Longest request path [`parse`] looks at: `tile/63/` and seven index groups and
/// `.p/255` fit in well under this.
pub const MAX_PATH_LEN: usize = 64;

/// One tile or entry bundle, as named by a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    /// The tile level, or `None` for an entry bundle.
    pub level: Option<u8>,
    /// The tile index `N` within its level.
    pub index: u64,
    /// Hashes (or entries) in the tile: 256 for a full tile, 1 to 255 for a partial one.
    pub width: u16,
}

/// Why a path does not name a tile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("not a tile path: {0}")]
    Malformed(&'static str),
}

impl Tile {
    /// The path of this tile, relative to the log's prefix, e.g. `tile/0/x001/234.p/7`.
    pub fn path(&self) -> String {
        let level = self.level.map_or_else(|| "entries".to_owned(), |l| l.to_string());
        let mut out = format!("tile/{level}/{}", index_path(self.index));
        if self.width < TILE_WIDTH as u16 {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }

    /// Whether this is a full tile (256 wide), which never changes once served.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The hash tile at tree level `8 level` that holds node `node` of that level, as
    /// it stands in a tree of `size` entries, or `None` if the tree has no such node.
    pub fn for_node(level: u8, node: u64, size: u64) -> Option<Tile> {
        let count = level_len(level, size);
        if node >= count {
            return None;
        }
        let index = node / TILE_WIDTH;
        Some(Tile { level: Some(level), index, width: width_at(index, count) })
    }

    /// The entry bundle holding entry `entry` in a tree of `size` entries.
    pub fn bundle_for(entry: u64, size: u64) -> Option<Tile> {
        if entry >= size {
            return None;
        }
        let index = entry / TILE_WIDTH;
        Some(Tile { level: None, index, width: width_at(index, size) })
    }

    /// The first item (node of the tile's level, or entry) the tile holds.
    pub fn start(&self) -> u64 {
        self.index.saturating_mul(TILE_WIDTH)
    }

    /// Whether a tree of `size` entries has this tile: every item it names exists.
    /// Full tiles exist for good once they do; a partial tile only up to the width the
    /// tree has reached (a wider partial tile of the same index then replaces it).
    pub fn exists_in(&self, size: u64) -> bool {
        let count = match self.level {
            Some(l) => level_len(l, size),
            None => size,
        };
        self.start().checked_add(u64::from(self.width)).is_some_and(|end| end <= count)
    }
}

/// Node hashes at tree level `8 level` in a tree of `size` entries.
pub fn level_len(level: u8, size: u64) -> u64 {
    let shift = u32::from(level) * TILE_HEIGHT;
    if shift >= 64 { 0 } else { size >> shift }
}

/// The width of tile `index` of a level that has `count` items: 256 if full.
fn width_at(index: u64, count: u64) -> u16 {
    let left = count - index * TILE_WIDTH;
    left.min(TILE_WIDTH) as u16
}

/// `N` in 3-digit groups, all but the last prefixed with `x`.
fn index_path(mut n: u64) -> String {
    let mut groups = Vec::new();
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, g)| if i < last { format!("x{g:03}") } else { format!("{g:03}") })
        .collect::<Vec<_>>()
        .join("/")
}

/// Parses a tile or entry bundle path relative to the log's prefix (`tile/...`, no
/// leading slash). Only the canonical spelling is accepted: no leading zero groups
/// (`x000/005` is `005`), no leading zeros in `<L>` or `<W>`, `<W>` only from 1 to
/// 255, `<L>` only up to 63, and `<N>` must fit in a `u64`.
pub fn parse(path: &str) -> Result<Tile, PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let rest = path.strip_prefix("tile/").ok_or(PathError::Malformed("does not start with `tile/`"))?;
    let (level, rest) = rest.split_once('/').ok_or(PathError::Malformed("no tile index"))?;
    let level = if level == "entries" {
        None
    } else {
        Some(small_decimal(level, 63).ok_or(PathError::Malformed("level must be 0 to 63"))? as u8)
    };
    // The width suffix, `.p/<W>`, follows the last index group.
    let (index, width) = match rest.split_once(".p/") {
        Some((index, w)) => {
            let w = small_decimal(w, 255).filter(|&w| w >= 1).ok_or(PathError::Malformed("width must be 1 to 255"))?;
            (index, w as u16)
        }
        None => (rest, TILE_WIDTH as u16),
    };
    let groups: Vec<&str> = index.split('/').collect();
    let (last, upper) = groups.split_last().ok_or(PathError::Malformed("no tile index"))?;
    let mut n: u64 = 0;
    for (i, g) in upper.iter().enumerate() {
        let digits =
            g.strip_prefix('x').ok_or(PathError::Malformed("index groups before the last must start with `x`"))?;
        let v = group(digits)?;
        if i == 0 && v == 0 {
            return Err(PathError::Malformed("index has a leading zero group"));
        }
        n = n.checked_mul(1000).and_then(|n| n.checked_add(v)).ok_or(PathError::Malformed("index too large"))?;
    }
    let v = group(last)?;
    n = n.checked_mul(1000).and_then(|n| n.checked_add(v)).ok_or(PathError::Malformed("index too large"))?;
    Ok(Tile { level, index: n, width })
}

/// Three ASCII digits.
fn group(s: &str) -> Result<u64, PathError> {
    let b = s.as_bytes();
    if b.len() != 3 || !b.iter().all(u8::is_ascii_digit) {
        return Err(PathError::Malformed("index groups are three digits"));
    }
    Ok(b.iter().fold(0, |acc, d| acc * 10 + u64::from(d - b'0')))
}

/// A decimal number up to `max` without sign or leading zeros.
fn small_decimal(s: &str, max: u64) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    let v = b.iter().fold(0, |acc, d| acc * 10 + u64::from(d - b'0'));
    (v <= max).then_some(v)
}

/// Why an entry bundle or hash tile's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("entry {0} of the bundle is cut short")]
    Truncated(usize),
    #[error("bundle holds {got} entries, expected {want}")]
    Count { got: usize, want: usize },
    #[error("tile is {got} bytes, expected {want}")]
    TileLength { got: usize, want: usize },
    #[error("entry of {0} bytes does not fit in an entry bundle (65535 at most)")]
    EntryTooLarge(usize),
}

/// Appends `entry` to an entry bundle being built.
pub fn push_entry(bundle: &mut Vec<u8>, entry: &[u8]) -> Result<(), BundleError> {
    let len = u16::try_from(entry.len()).map_err(|_| BundleError::EntryTooLarge(entry.len()))?;
    bundle.extend_from_slice(&len.to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// Splits an entry bundle of `width` entries into its entries.
pub fn parse_bundle(bytes: &[u8], width: usize) -> Result<Vec<&[u8]>, BundleError> {
    let mut out = Vec::with_capacity(width.min(TILE_WIDTH as usize));
    let mut rest = bytes;
    while !rest.is_empty() {
        let i = out.len();
        if i == width {
            return Err(BundleError::Count { got: i + 1, want: width });
        }
        let [a, b, tail @ ..] = rest else { return Err(BundleError::Truncated(i)) };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        if tail.len() < len {
            return Err(BundleError::Truncated(i));
        }
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    if out.len() != width {
        return Err(BundleError::Count { got: out.len(), want: width });
    }
    Ok(out)
}

/// Splits a hash tile of `width` hashes into its hashes.
pub fn parse_hash_tile(bytes: &[u8], width: usize) -> Result<Vec<Hash>, BundleError> {
    if bytes.len() != width * HASH_BYTES {
        return Err(BundleError::TileLength { got: bytes.len(), want: width * HASH_BYTES });
    }
    Ok(bytes.chunks_exact(HASH_BYTES).map(|c| c.try_into().unwrap_or([0; 32])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(level: Option<u8>, index: u64, width: u16) -> Tile {
        Tile { level, index, width }
    }

    #[test]
    fn spec_examples() {
        // c2sp.org/tlog-tiles: "index 1234067 will be encoded as x001/x234/067".
        assert_eq!(tile(Some(0), 1_234_067, 256).path(), "tile/0/x001/x234/067");
        assert_eq!(parse("tile/0/x001/x234/067"), Ok(tile(Some(0), 1_234_067, 256)));
        assert_eq!(parse("tile/entries/000.p/1"), Ok(tile(None, 0, 1)));
        assert_eq!(parse("tile/63/999.p/255"), Ok(tile(Some(63), 999, 255)));
        assert_eq!(tile(Some(2), 5, 7).path(), "tile/2/005.p/7");
        assert_eq!(tile(None, u64::MAX, 256).path(), "tile/entries/x018/x446/x744/x073/x709/x551/615");
        assert_eq!(parse("tile/entries/x018/x446/x744/x073/x709/x551/615"), Ok(tile(None, u64::MAX, 256)));
    }

    #[test]
    fn spec_partial_tiles_of_a_tree_of_70000() {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one
        // partial level 0 tile of width 112, one full level 1 tile, one partial level 1
        // tile of width 17, and one partial level 2 tile of width 1."
        let s = 70_000;
        assert_eq!(Tile::for_node(0, s - 1, s), Some(tile(Some(0), 273, 112)));
        assert_eq!(Tile::for_node(0, 272 * 256, s), Some(tile(Some(0), 272, 256)));
        assert_eq!(Tile::for_node(1, level_len(1, s) - 1, s), Some(tile(Some(1), 1, 17)));
        assert_eq!(Tile::for_node(1, 0, s), Some(tile(Some(1), 0, 256)));
        assert_eq!(Tile::for_node(2, 0, s), Some(tile(Some(2), 0, 1)));
        assert_eq!(Tile::for_node(3, 0, s), None);
        // "a tree of size 256 will be represented by a full level 0 tile and a partial
        // level 1 tile of width 1."
        assert_eq!(Tile::for_node(0, 255, 256), Some(tile(Some(0), 0, 256)));
        assert_eq!(Tile::for_node(1, 0, 256), Some(tile(Some(1), 0, 1)));
        assert!(tile(Some(1), 0, 1).exists_in(256));
        assert!(!tile(Some(1), 0, 2).exists_in(256));
        assert!(!tile(Some(0), 1, 1).exists_in(256));
        assert!(tile(Some(0), 0, 3).exists_in(256));
    }

    #[test]
    fn refuses_non_canonical_and_malformed_paths() {
        for bad in [
            "",
            "tile",
            "tile/",
            "tile/0",
            "tile/0/",
            "/tile/0/000",
            "tile/00/000",
            "tile/64/000",
            "tile/-1/000",
            "tile/+1/000",
            "tile/0/0",
            "tile/0/0000",
            "tile/0/x000/005",
            "tile/0/x001",
            "tile/0/001/002",
            "tile/0/y001/002",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/01",
            "tile/0/000.p/",
            "tile/0/000.p/1/",
            "tile/0/000.p/1.p/1",
            "tile/0/000/",
            "tile/data/000",
            "tile/entries/x019/x000/x000/x000/x000/x000/000",
            "tile/entries/x1000/000",
            "tile/0/00a",
            "tile/0/0 1",
            "tile/0/x001/x001/x001/x001/x001/x001/x001/x001/x001/x001/x001/x001/001",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn bundles_round_trip_and_refuse_bad_lengths() {
        let mut b = Vec::new();
        push_entry(&mut b, b"abc").unwrap();
        push_entry(&mut b, b"").unwrap();
        assert_eq!(b, [0, 3, b'a', b'b', b'c', 0, 0]);
        assert_eq!(parse_bundle(&b, 2), Ok(vec![b"abc".as_slice(), b"".as_slice()]));
        assert_eq!(parse_bundle(&b, 1), Err(BundleError::Count { got: 2, want: 1 }));
        assert_eq!(parse_bundle(&b[..4], 2), Err(BundleError::Truncated(0)));
        assert_eq!(push_entry(&mut b, &[0; 65_536]), Err(BundleError::EntryTooLarge(65_536)));
        assert!(push_entry(&mut Vec::new(), &[0; 65_535]).is_ok());
    }
}
