//! SMS segments: how many parts a text message is billed as.
//!
//! A message is sent as GSM-7 when every character is in the GSM 03.38 default alphabet or its
//! extension table, and as UCS-2 otherwise. A message that fits one segment (160 septets or 70
//! UTF-16 code units) is one segment; a longer one is split into parts of 153 septets or 67 code
//! units, because each part then carries a user data header.
//!
//! Parts are **packed**, the way the public Twilio segment calculator does it: the message is cut
//! into indivisible pieces (grapheme clusters, which also keeps an escape pair and a surrogate pair
//! whole) and the pieces fill a part in order until the next one does not fit, which then opens
//! the next part. That is why `152 × "A" + "[" + 152 × "A"` needs 3 parts, not 2: the two septets
//! of `[` do not fit in the one septet left in the first part.

use unicode_segmentation::UnicodeSegmentation;

/// Septets or code units in a message that is sent as a single segment.
const GSM7_SINGLE: u64 = 160;
/// Septets in each part of a multi-part GSM-7 message (the header takes the rest).
const GSM7_PART: u64 = 153;
/// UTF-16 code units in a message that is sent as a single UCS-2 segment.
const UCS2_SINGLE: u64 = 70;
/// UTF-16 code units in each part of a multi-part UCS-2 message.
const UCS2_PART: u64 = 67;

/// The character encoding a message is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet with its extension table.
    Gsm7,
    /// UCS-2, counted in UTF-16 code units.
    Ucs2,
}

impl Encoding {
    /// Septets (GSM-7) or UTF-16 code units (UCS-2) that one character takes in this encoding.
    ///
    /// For [`Encoding::Gsm7`] the character must be GSM-7 (see [`encoding`]); anything else is
    /// counted as one septet, which never happens for a body whose encoding was chosen by
    /// [`encoding`].
    pub fn units(self, c: char) -> u32 {
        match self {
            Encoding::Gsm7 => gsm7_septets(c).unwrap_or(1),
            // `len_utf16` is 2 exactly for the characters outside the BMP (a surrogate pair).
            Encoding::Ucs2 => c.len_utf16() as u32,
        }
    }

    /// What a message that is sent as one segment may hold.
    fn single_capacity(self) -> u64 {
        match self {
            Encoding::Gsm7 => GSM7_SINGLE,
            Encoding::Ucs2 => UCS2_SINGLE,
        }
    }

    /// What each part of a multi-part message may hold.
    fn part_capacity(self) -> u64 {
        match self {
            Encoding::Gsm7 => GSM7_PART,
            Encoding::Ucs2 => UCS2_PART,
        }
    }

    /// Units of a whole string in this encoding.
    fn size(self, s: &str) -> u64 {
        s.chars().map(|c| u64::from(self.units(c))).sum()
    }
}

/// The encoding a message body is sent with: GSM-7 when every character is in the GSM 03.38
/// default alphabet or its extension table, UCS-2 otherwise. An empty body is GSM-7.
pub fn encoding(body: &str) -> Encoding {
    if body.chars().all(|c| gsm7_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// The number of segments an SMS body is billed as: at least 1, also for an empty
/// body.
pub fn segments(body: &str) -> u32 {
    // A body can only be split into as many parts as it has bytes, so this never saturates for a
    // real message; saturating keeps the function total anyway.
    u32::try_from(part_starts(body).len()).unwrap_or(u32::MAX)
}

/// Septets a character takes in GSM-7: 1 in the default alphabet, 2 in the extension table
/// (an escape and the character), `None` when GSM-7 cannot carry it.
///
/// The table is the Unicode mapping of 3GPP TS 23.038 as the Twilio calculator uses it: position
/// 0x09 is the capital `Ç` (so a small `ç` forces UCS-2), and the Greek capitals are the Greek
/// code points, not the Latin letters that look the same. The escape (0x1B) maps to no
/// character, and the national single-shift tables are not used.
fn gsm7_septets(c: char) -> Option<u32> {
    match c {
        // 0x00–0x0F
        '@' | '\u{A3}' | '$' | '\u{A5}' | '\u{E8}' | '\u{E9}' | '\u{F9}' | '\u{EC}' | '\u{F2}'
        | '\u{C7}' | '\n' | '\u{D8}' | '\u{F8}' | '\r' | '\u{C5}' | '\u{E5}' => Some(1),
        // 0x10–0x1F: Δ _ Φ Γ Λ Ω Π Ψ Σ Θ Ξ (escape) Æ æ ß É
        '\u{394}' | '_' | '\u{3A6}' | '\u{393}' | '\u{39B}' | '\u{3A9}' | '\u{3A0}' | '\u{3A8}'
        | '\u{3A3}' | '\u{398}' | '\u{39E}' | '\u{C6}' | '\u{E6}' | '\u{DF}' | '\u{C9}' => Some(1),
        // 0x20–0x3F: ASCII punctuation and digits, with ¤ where ASCII has `$`.
        ' '
        | '!'
        | '"'
        | '#'
        | '\u{A4}'
        | '%'
        | '&'
        | '\''
        | '('
        | ')'
        | '*'
        | '+'
        | ','
        | '-'
        | '.'
        | '/'
        | '0'..='9'
        | ':'
        | ';'
        | '<'
        | '='
        | '>'
        | '?' => Some(1),
        // 0x40–0x5F: ¡ A–Z Ä Ö Ñ Ü §
        '\u{A1}' | 'A'..='Z' | '\u{C4}' | '\u{D6}' | '\u{D1}' | '\u{DC}' | '\u{A7}' => Some(1),
        // 0x60–0x7F: ¿ a–z ä ö ñ ü à
        '\u{BF}' | 'a'..='z' | '\u{E4}' | '\u{F6}' | '\u{F1}' | '\u{FC}' | '\u{E0}' => Some(1),
        // The extension table: form feed ^ { } \ [ ~ ] | €
        '\u{C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '\u{20AC}' => Some(2),
        _ => None,
    }
}

/// The byte offsets at which the parts of a body start; the first is always 0, so its length is
/// the number of segments.
///
/// Packing is next-fit over indivisible pieces: a piece that does not fit in what is left of the
/// current part opens the next one. The pieces are grapheme clusters (see [`clusters`]); an escape
/// pair and a surrogate pair are single characters here, so they are never split either.
///
/// A cluster larger than a whole part (only possible in UCS-2, e.g. a letter with dozens of
/// combining marks or an emoji with dozens of modifiers) cannot be kept whole. It is then packed
/// character by character, continuing the current part, so it is cut only at code-point
/// boundaries (never inside a surrogate pair) and as few times as possible. The Twilio calculator
/// instead overfills a part with such a cluster, which no carrier can send; cutting where the
/// text must be cut is the closest thing that can.
fn part_starts(body: &str) -> Vec<usize> {
    let encoding = encoding(body);
    let mut starts = vec![0];
    if encoding.size(body) <= encoding.single_capacity() {
        return starts;
    }
    let capacity = encoding.part_capacity();
    let mut used = 0;
    let mut place = |at: usize, size: u64| {
        if used + size > capacity {
            starts.push(at);
            used = 0;
        }
        used += size;
    };
    for (at, cluster) in clusters(body) {
        let size = encoding.size(cluster);
        if size <= capacity {
            place(at, size);
        } else {
            for (offset, c) in cluster.char_indices() {
                place(at + offset, u64::from(encoding.units(c)));
            }
        }
    }
    starts
}

/// The extended grapheme clusters of a body with their byte offsets, following UAX #29 **without**
/// rule GB9c.
///
/// GB9c, added in Unicode 15.1, keeps an Indic conjunct such as `क्ष` (consonant, virama,
/// consonant) in one cluster. The Twilio calculator's splitter predates it and cuts before the
/// second consonant, and billrun follows the calculator. `unicode-segmentation` does apply GB9c
/// (1.13 implements Unicode 17), so each cluster it returns is cut again wherever only GB9c
/// joined it; see [`joined_by_gb9c`]. Taking a rule away only adds breaks (every other rule
/// decides exactly as before), so these cuts give precisely the clusters of UAX #29 without GB9c.
/// Should a later version of the library drop GB9c, there is nothing left to cut and this stays
/// correct.
fn clusters(body: &str) -> impl Iterator<Item = (usize, &str)> {
    body.grapheme_indices(true)
        .flat_map(|(at, cluster)| split_conjuncts(cluster).map(move |(o, piece)| (at + o, piece)))
}

/// Cuts one cluster of the segmentation library wherever GB9c alone joined it.
fn split_conjuncts(cluster: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = cluster;
    let mut start = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut chars = rest.char_indices();
        let (_, mut prev) = chars.next()?;
        let cut = chars
            .find(|&(_, c)| {
                let gb9c = joined_by_gb9c(prev, c);
                prev = c;
                gb9c
            })
            .map_or(rest.len(), |(i, _)| i);
        let piece = (start, &rest[..cut]);
        rest = &rest[cut..];
        start += cut;
        Some(piece)
    })
}

/// Whether UAX #29 without GB9c breaks between two neighbours that the segmentation library
/// put in one cluster, i.e. whether only GB9c joined them.
///
/// Without GB9c, a character of class Other (every InCB=Consonant is one) starts a new cluster
/// unless it follows a Prepend (GB9b): the other rules that join attach only Extend, ZWJ,
/// SpacingMark, Hangul, pictographs after a ZWJ, or regional indicators. So the library's join
/// was GB9c's doing exactly when `c` is an InCB=Consonant and `prev` is not a Prepend. Both are
/// asked of the library with tiny probes rather than copied from its private tables, which keeps
/// this right as Unicode extends InCB to more scripts (16 and 17 did) or reshapes GB9c (18 drops
/// the consonant before the linkers):
/// * `c` is InCB=Consonant when it does not join a preceding `A` (so GB9/GB9a do not attach it)
///   and does join a preceding `क्` (KA, VIRAMA), which only GB9c can do;
/// * `prev` is Prepend when an `A` after it joins it, which only GB9b can do.
fn joined_by_gb9c(prev: char, c: char) -> bool {
    joins("\u{915}\u{94D}", c) && !joins("A", c) && !joins(prev.encode_utf8(&mut [0; 4]), 'A')
}

/// Whether the segmentation library keeps `c` in the same cluster as a short `text` before it.
fn joins(text: &str, c: char) -> bool {
    // The probes are at most three characters, so they fit on the stack.
    let mut buf = [0u8; 16];
    if text.len() > buf.len() - 4 {
        return false;
    }
    buf[..text.len()].copy_from_slice(text.as_bytes());
    let len = text.len() + c.encode_utf8(&mut buf[text.len()..]).len();
    std::str::from_utf8(&buf[..len]).is_ok_and(|probe| probe.graphemes(true).nth(1).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rep(s: &str, n: usize) -> String {
        s.repeat(n)
    }

    /// The pieces [`clusters`] returns, without offsets.
    fn pieces(s: &str) -> Vec<&str> {
        clusters(s).map(|(_, p)| p).collect()
    }

    /// The texts of the parts of a body.
    fn parts(body: &str) -> Vec<&str> {
        let starts = part_starts(body);
        let mut ends: Vec<usize> = starts[1..].to_vec();
        ends.push(body.len());
        starts.iter().zip(ends).map(|(&s, e)| &body[s..e]).collect()
    }

    // Characters used below, by size: "й" is 1 UCS-2 unit and forces UCS-2, "😀" is a surrogate
    // pair, "€" is an extension character (2 septets in GSM-7, 1 unit in UCS-2).
    const CYR: &str = "\u{439}";
    const GRIN: &str = "\u{1F600}";
    const FAMILY: &str = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}";
    const FLAG_FR: &str = "\u{1F1EB}\u{1F1F7}";
    const FLAG_DE: &str = "\u{1F1E9}\u{1F1EA}";
    const THUMBS_MEDIUM: &str = "\u{1F44D}\u{1F3FD}";
    const KA: &str = "\u{915}";
    const VIRAMA: &str = "\u{94D}";
    const SSA: &str = "\u{937}";

    #[test]
    fn empty_body_is_one_gsm_segment() {
        assert_eq!(segments(""), 1);
        assert_eq!(encoding(""), Encoding::Gsm7);
    }

    #[test]
    fn gsm_table_has_127_basic_and_10_extension_characters() {
        let all: Vec<(char, u32)> = (0..=0x10FFFF)
            .filter_map(char::from_u32)
            .filter_map(|c| gsm7_septets(c).map(|n| (c, n)))
            .collect();
        assert_eq!(all.iter().filter(|(_, n)| *n == 1).count(), 127);
        assert_eq!(all.iter().filter(|(_, n)| *n == 2).count(), 10);
    }

    #[test]
    fn encoding_follows_the_gsm_alphabet() {
        assert_eq!(encoding("Hello, world! @£$¥ èéùìò Ç Øø Åå"), Encoding::Gsm7);
        assert_eq!(
            encoding("ΔΦΓΛΩΠΨΣΘΞ ÆæßÉ ¤ ¡ÄÖÑÜ§ ¿äöñüà _"),
            Encoding::Gsm7
        );
        assert_eq!(encoding("^{}\\[~]|€\u{C}\r\n"), Encoding::Gsm7);
        // Lookalikes and near misses force UCS-2.
        for s in [
            "`", "ç", "α", "\u{2126}", "\u{391}", "\u{A0}", "\t", "\u{1B}", "😀", "ł",
        ] {
            assert_eq!(encoding(s), Encoding::Ucs2, "{s:?}");
        }
    }

    #[test]
    fn units_per_character() {
        assert_eq!(Encoding::Gsm7.units('A'), 1);
        assert_eq!(Encoding::Gsm7.units('€'), 2);
        assert_eq!(Encoding::Gsm7.units('\u{C}'), 2);
        assert_eq!(Encoding::Ucs2.units('€'), 1);
        assert_eq!(Encoding::Ucs2.units('й'), 1);
        assert_eq!(Encoding::Ucs2.units('😀'), 2);
    }

    #[test]
    fn gsm_boundary_lengths() {
        assert_eq!(segments(&rep("A", 1)), 1);
        assert_eq!(segments(&rep("A", 160)), 1);
        assert_eq!(segments(&rep("A", 161)), 2);
        assert_eq!(segments(&rep("A", 306)), 2);
        assert_eq!(segments(&rep("A", 307)), 3);
        assert_eq!(segments(&rep("A", 459)), 3);
        assert_eq!(segments(&rep("A", 460)), 4);
    }

    #[test]
    fn gsm_extension_characters_take_two_septets() {
        assert_eq!(segments(&rep("€", 80)), 1);
        assert_eq!(segments(&(rep("€", 80) + "A")), 2);
        assert_eq!(segments(&(rep("A", 159) + "[")), 2);
        assert_eq!(segments(&(rep("A", 158) + "[")), 1);
    }

    #[test]
    fn spec_example_escape_pair_never_straddles() {
        let body = rep("A", 152) + "[" + &rep("A", 152);
        assert_eq!(segments(&body), 3);
        assert_eq!(
            parts(&body),
            [rep("A", 152), "[".to_string() + &rep("A", 151), rep("A", 1)]
        );
    }

    #[test]
    fn escape_pair_at_part_edges() {
        // Fills the first part exactly.
        let exact = rep("A", 151) + "[" + &rep("A", 153);
        assert_eq!(segments(&exact), 2);
        // One septet short: the pair opens the second part, which then holds 153 septets.
        assert_eq!(segments(&(rep("A", 152) + "{" + &rep("A", 151))), 2);
        // Every part full of pairs: 76 pairs (152 septets) per part, the 153rd septet stays empty.
        assert_eq!(segments(&rep("~", 152)), 2);
        assert_eq!(segments(&rep("~", 153)), 3);
        // The last part edge of a three-part message.
        assert_eq!(segments(&(rep("A", 305) + "€")), 3);
        assert_eq!(segments(&(rep("A", 304) + "€")), 2);
    }

    #[test]
    fn crlf_is_one_cluster_and_stays_whole() {
        assert_eq!(pieces("a\r\nb"), ["a", "\r\n", "b"]);
        assert_eq!(segments(&(rep("A", 152) + "\r\n" + &rep("A", 152))), 3);
        // LF then CR is two clusters, so it may be cut.
        assert_eq!(segments(&(rep("A", 152) + "\n\r" + &rep("A", 152))), 2);
    }

    #[test]
    fn ucs2_boundary_lengths() {
        assert_eq!(encoding(&rep(CYR, 70)), Encoding::Ucs2);
        assert_eq!(segments(&rep(CYR, 70)), 1);
        assert_eq!(segments(&rep(CYR, 71)), 2);
        assert_eq!(segments(&rep(CYR, 134)), 2);
        assert_eq!(segments(&rep(CYR, 135)), 3);
        assert_eq!(segments(&rep(CYR, 201)), 3);
        assert_eq!(segments(&rep(CYR, 202)), 4);
    }

    #[test]
    fn one_ucs2_character_turns_gsm_characters_into_code_units() {
        // 159 GSM characters fit in GSM-7, but one "й" makes all 160 count as code units.
        assert_eq!(segments(&rep("A", 159)), 1);
        assert_eq!(segments(&(rep("A", 159) + CYR)), 3);
        // Extension characters take one code unit in UCS-2, not two.
        assert_eq!(segments(&(rep("€", 69) + CYR)), 1);
    }

    #[test]
    fn surrogate_pairs_count_two_units() {
        assert_eq!(segments(&rep(GRIN, 35)), 1);
        assert_eq!(segments(&rep(GRIN, 36)), 2);
        // 33 pairs (66 units) per part: 67 pairs need 3 parts although 134 units would fit in 2.
        assert_eq!(segments(&rep(GRIN, 66)), 2);
        assert_eq!(segments(&rep(GRIN, 67)), 3);
    }

    #[test]
    fn surrogate_pair_at_part_edges() {
        // The pair starts on unit 66 of 67 and moves to the second part.
        let body = rep(CYR, 66) + GRIN + &rep(CYR, 66);
        assert_eq!(segments(&body), 3);
        assert_eq!(parts(&body)[0], rep(CYR, 66));
        // The pair ends exactly on unit 67.
        assert_eq!(segments(&(rep(CYR, 65) + GRIN + &rep(CYR, 67))), 2);
        // A single segment may end with a pair on units 69–70.
        assert_eq!(segments(&(rep(CYR, 68) + GRIN)), 1);
        assert_eq!(segments(&(rep(CYR, 69) + GRIN)), 2);
    }

    #[test]
    fn zwj_family_is_one_cluster_and_never_straddles() {
        assert_eq!(pieces(FAMILY), [FAMILY]);
        assert_eq!(Encoding::Ucs2.size(FAMILY), 11);
        // 60 + 11 > 67: the whole family opens part two, and 63 more units need a third part.
        let body = rep(CYR, 60) + FAMILY + &rep(CYR, 63);
        assert_eq!(Encoding::Ucs2.size(&body), 134);
        assert_eq!(segments(&body), 3);
        assert_eq!(parts(&body)[1], FAMILY.to_string() + &rep(CYR, 56));
        // When it fits, it stays in the first part.
        assert_eq!(segments(&(rep(CYR, 56) + FAMILY + &rep(CYR, 67))), 2);
    }

    #[test]
    fn flags_are_pairs_of_regional_indicators() {
        assert_eq!(pieces(&(FLAG_FR.to_string() + FLAG_DE)), [FLAG_FR, FLAG_DE]);
        // Split only at surrogate pairs this would be 2 parts (65 + 2 | 2 + 65); the flag is
        // kept whole.
        assert_eq!(segments(&(rep(CYR, 65) + FLAG_FR + &rep(CYR, 65))), 3);
        assert_eq!(segments(&(rep(CYR, 63) + FLAG_FR + &rep(CYR, 67))), 2);
    }

    #[test]
    fn skin_tone_modifier_stays_with_its_emoji() {
        assert_eq!(pieces(THUMBS_MEDIUM), [THUMBS_MEDIUM]);
        assert_eq!(segments(&(rep(CYR, 65) + THUMBS_MEDIUM + &rep(CYR, 65))), 3);
    }

    #[test]
    fn combining_marks_stay_with_their_letter() {
        // "e" + U+0301 is UCS-2 (the mark is not GSM) and one cluster of 2 units.
        let e_acute = "e\u{301}";
        assert_eq!(segments(&(rep(CYR, 66) + e_acute + &rep(CYR, 66))), 3);
        assert_eq!(segments(&(rep(CYR, 65) + e_acute + &rep(CYR, 67))), 2);
    }

    #[test]
    fn devanagari_conjunct_is_cut_as_without_gb9c() {
        let conjunct = KA.to_string() + VIRAMA + SSA;
        // The library applies GB9c and keeps the conjunct together; without GB9c it is cut
        // before the second consonant.
        assert_eq!(conjunct.graphemes(true).count(), 1);
        assert_eq!(
            pieces(&conjunct),
            [KA.to_string() + VIRAMA, SSA.to_string()]
        );
        // 65 + 2 fills part one exactly, so 134 units fit in 2 parts. With GB9c the 3-unit
        // conjunct would open part two and overflow it into a third.
        let body = rep(KA, 65) + &conjunct + &rep(KA, 66);
        assert_eq!(Encoding::Ucs2.size(&body), 134);
        assert_eq!(segments(&body), 2);
    }

    #[test]
    fn conjunct_with_zwj_or_several_viramas_is_cut_too() {
        let half_form = KA.to_string() + VIRAMA + "\u{200D}" + SSA;
        assert_eq!(half_form.graphemes(true).count(), 1);
        assert_eq!(
            pieces(&half_form),
            [KA.to_string() + VIRAMA + "\u{200D}", SSA.to_string()]
        );
        let triple = KA.to_string() + VIRAMA + SSA + VIRAMA + KA;
        assert_eq!(triple.graphemes(true).count(), 1);
        assert_eq!(
            pieces(&triple),
            [
                KA.to_string() + VIRAMA,
                SSA.to_string() + VIRAMA,
                KA.to_string()
            ]
        );
        // Bengali too: ক্ষ.
        assert_eq!(
            pieces("\u{995}\u{9CD}\u{9B7}"),
            ["\u{995}\u{9CD}", "\u{9B7}"]
        );
    }

    #[test]
    fn emoji_zwj_sequences_are_not_cut() {
        for s in [
            FAMILY,
            "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}", // rainbow flag
            "\u{1F469}\u{1F3FD}\u{200D}\u{1F4BB}", // technologist, skin tone
            "\u{2764}\u{FE0F}\u{200D}\u{1F525}",  // heart on fire
            "\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}", // England (tags)
        ] {
            assert_eq!(pieces(s), [s], "{s:?}");
        }
    }

    #[test]
    fn gb9c_joins_are_told_from_other_joins() {
        // Consonant after a linker, or after a ZWJ or nukta among the linkers.
        assert!(joined_by_gb9c('\u{94D}', '\u{937}'));
        assert!(joined_by_gb9c('\u{200D}', '\u{937}'));
        assert!(joined_by_gb9c('\u{93C}', '\u{937}'));
        // GB11, GB9, GB12/13 and GB3 joins stay.
        assert!(!joined_by_gb9c('\u{200D}', '\u{1F469}'));
        assert!(!joined_by_gb9c('\u{915}', '\u{94D}'));
        assert!(!joined_by_gb9c('\u{1F1EB}', '\u{1F1F7}'));
        assert!(!joined_by_gb9c('\r', '\n'));
        // A consonant after a Prepend (MALAYALAM LETTER DOT REPH) is joined by GB9b, not GB9c.
        assert!(!joined_by_gb9c('\u{D4E}', '\u{D15}'));
        assert_eq!(pieces("\u{D4E}\u{D15}"), ["\u{D4E}\u{D15}"]);
    }

    #[test]
    fn hangul_syllables_stay_whole() {
        // Conjoining jamo form one cluster through GB6–GB8.
        assert_eq!(
            pieces("\u{1100}\u{1161}\u{11A8}"),
            ["\u{1100}\u{1161}\u{11A8}"]
        );
    }

    #[test]
    fn oversized_cluster_is_cut_at_code_points() {
        // 81 units in one cluster: it cannot fit a 67-unit part, so it is cut once, as late as
        // possible.
        let zalgo = "e".to_string() + &rep("\u{301}", 80);
        assert_eq!(pieces(&zalgo).len(), 1);
        assert_eq!(segments(&zalgo), 2);
        // It continues the current part instead of opening a new one: 10 + 57 | 24.
        assert_eq!(segments(&(rep(CYR, 10) + &zalgo)), 2);
        assert_eq!(parts(&(rep(CYR, 10) + &zalgo))[0].chars().count(), 67);
        // A 70-unit cluster alone is still a single segment.
        assert_eq!(segments(&("e".to_string() + &rep("\u{301}", 69))), 1);
    }

    #[test]
    fn oversized_cluster_keeps_surrogate_pairs_whole() {
        // 👍 followed by 40 skin-tone modifiers: one cluster of 82 units, all surrogate pairs.
        let body = CYR.to_string() + "\u{1F44D}" + &rep("\u{1F3FD}", 40);
        let parts = parts(&body);
        assert_eq!(parts.len(), 2);
        // 1 + 33 pairs = 67 units; no part starts inside a pair (slicing would have panicked).
        assert_eq!(Encoding::Ucs2.size(parts[0]), 67);
        assert_eq!(Encoding::Ucs2.size(parts[1]), 16);
        // Starting on an even unit, a part of pairs holds 66 units and leaves one free.
        let pairs = "\u{1F44D}".to_string() + &rep("\u{1F3FD}", 67);
        assert_eq!(segments(&pairs), 3);
    }

    /// Characters that exercise every rule: GSM basic and extension, CR/LF, UCS-2 letters,
    /// surrogate pairs, modifiers, ZWJ, regional indicators, combining marks and Devanagari.
    fn any_char() -> impl Strategy<Value = char> {
        prop::sample::select(vec![
            'A',
            'z',
            ' ',
            '@',
            'é',
            '\r',
            '\n',
            '[',
            '€',
            '~',
            '\u{C}',
            'й',
            'ç',
            '\u{301}',
            '\u{1F600}',
            '\u{1F44D}',
            '\u{1F3FD}',
            '\u{200D}',
            '\u{FE0F}',
            '\u{1F1EB}',
            '\u{1F1F7}',
            '\u{915}',
            '\u{937}',
            '\u{94D}',
            '\u{93C}',
            '\u{93E}',
            '\u{1F468}',
        ])
    }

    fn gsm_char() -> impl Strategy<Value = char> {
        prop::sample::select(vec!['A', ' ', '.', '\r', '\n', '[', '€', '|', '\u{C}', 'Ø'])
    }

    fn body(ch: BoxedStrategy<char>, max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(ch, 0..max).prop_map(|v| v.into_iter().collect())
    }

    /// Whether a char is a Devanagari consonant: all are InCB=Consonant of class Other, so without
    /// GB9c they start a cluster after anything in [`any_char`] (which has no Prepend).
    fn devanagari_consonant(c: char) -> bool {
        matches!(c, '\u{915}'..='\u{939}' | '\u{958}'..='\u{95F}' | '\u{978}'..='\u{97F}')
    }

    proptest! {
        #[test]
        fn parts_tile_the_body_and_respect_capacity(s in body(any_char().boxed(), 400)) {
            let enc = encoding(&s);
            let parts = parts(&s);
            prop_assert_eq!(parts.concat(), s.clone());
            prop_assert_eq!(parts.len() as u32, segments(&s));
            if enc.size(&s) <= enc.single_capacity() {
                prop_assert_eq!(parts.len(), 1);
            } else {
                for p in &parts {
                    prop_assert!(enc.size(p) <= enc.part_capacity());
                    prop_assert!(!p.is_empty());
                }
            }
        }

        #[test]
        fn packing_is_next_fit_over_whole_clusters(s in body(any_char().boxed(), 400)) {
            let enc = encoding(&s);
            let starts = part_starts(&s);
            let pieces: Vec<(usize, &str)> = clusters(&s).collect();
            for &start in &starts[1..] {
                // Every cut is at a cluster boundary, unless inside an oversized cluster.
                let inside = pieces.iter().find(|(at, p)| *at < start && start < at + p.len());
                if let Some((_, p)) = inside {
                    prop_assert!(enc.size(p) > enc.part_capacity());
                }
                // And the part before it could not take the next piece.
                let prev = starts.iter().rev().find(|&&b| b < start).copied().unwrap_or(0);
                let first_char = s[start..].chars().next().map_or(0, |c| u64::from(enc.units(c)));
                let next = match pieces.iter().find(|(at, _)| *at == start) {
                    Some((_, p)) if enc.size(p) <= enc.part_capacity() => enc.size(p),
                    _ => first_char,
                };
                prop_assert!(enc.size(&s[prev..start]) + next > enc.part_capacity());
            }
        }

        #[test]
        fn any_text_is_tiled_by_its_parts(s in body(any::<char>().boxed(), 300)) {
            let parts = parts(&s);
            prop_assert_eq!(parts.concat(), s.clone());
            prop_assert!(segments(&s) >= 1);
            let pieces: String = clusters(&s).map(|(_, p)| p).collect();
            prop_assert_eq!(pieces, s.clone());
        }

        #[test]
        fn gsm_without_pairs_divides_evenly(n in 0usize..1000) {
            let expected = if n <= 160 { 1 } else { n.div_ceil(153) as u32 };
            prop_assert_eq!(segments(&rep("a", n)), expected);
        }

        #[test]
        fn ucs2_single_units_divide_evenly(n in 1usize..1000) {
            let expected = if n <= 70 { 1 } else { n.div_ceil(67) as u32 };
            prop_assert_eq!(segments(&rep(CYR, n)), expected);
        }

        #[test]
        fn gsm_segments_are_bounded(s in body(gsm_char().boxed(), 700)) {
            prop_assert_eq!(encoding(&s), Encoding::Gsm7);
            let total = Encoding::Gsm7.size(&s);
            let n = u64::from(segments(&s));
            if total <= 160 {
                prop_assert_eq!(n, 1);
            } else {
                // Pieces are at most 2 septets, so a part wastes at most one.
                prop_assert!(n >= total.div_ceil(153));
                prop_assert!(n <= total.div_ceil(152));
            }
        }

        #[test]
        fn appending_never_lowers_gsm_count(s in body(gsm_char().boxed(), 500), c in gsm_char()) {
            let mut longer = s.clone();
            longer.push(c);
            prop_assert!(segments(&longer) >= segments(&s));
        }

        #[test]
        fn clusters_refine_the_library_and_cut_only_before_consonants(
            s in body(any_char().boxed(), 60)
        ) {
            let ours: Vec<(usize, &str)> = clusters(&s).collect();
            let theirs: Vec<usize> = s.grapheme_indices(true).map(|(at, _)| at).collect();
            let cuts: Vec<usize> = ours.iter().map(|(at, _)| *at).collect();
            prop_assert_eq!(ours.iter().map(|(_, p)| *p).collect::<String>(), s.clone());
            for at in &theirs {
                prop_assert!(cuts.contains(at));
            }
            for at in cuts.iter().filter(|at| !theirs.contains(at)) {
                let c = s[*at..].chars().next().unwrap_or_default();
                prop_assert!(devanagari_consonant(c), "extra cut before {:?}", c);
            }
            // Without GB9c a consonant after anything in this alphabet starts a cluster.
            for (_, p) in &ours {
                prop_assert!(!p.chars().skip(1).any(devanagari_consonant), "{:?}", p);
            }
        }
    }
}
