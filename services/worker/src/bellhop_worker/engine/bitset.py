"""Packed bitsets: one bit per row in little-endian uint64 words.

Row r is bit (r % 64) of word r // 64. Bits past the last row are always zero,
so a popcount of a bitset is the number of rows it contains.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64
Bitset = np.ndarray


def word_count(n_rows: int) -> int:
    return (n_rows + WORD_BITS - 1) // WORD_BITS


def from_bool(mask: np.ndarray) -> Bitset:
    """Pack a boolean row mask into words."""
    n_words = word_count(len(mask))
    packed = np.packbits(mask, bitorder="little")
    padded = np.zeros(n_words * 8, dtype=np.uint8)
    padded[: len(packed)] = packed
    return padded.view("<u8")


def to_bool(bits: Bitset, n_rows: int) -> np.ndarray:
    """Unpack words into a boolean row mask of length n_rows."""
    return np.unpackbits(bits.view(np.uint8), bitorder="little", count=n_rows).view(
        np.bool_
    )


def full(n_rows: int) -> Bitset:
    """Return a bitset holding every row."""
    bits = np.full(word_count(n_rows), np.uint64(0xFFFF_FFFF_FFFF_FFFF), dtype="<u8")
    tail = n_rows % WORD_BITS
    if tail:
        bits[-1] = np.uint64((1 << tail) - 1)
    return bits


def empty(n_rows: int) -> Bitset:
    return np.zeros(word_count(n_rows), dtype="<u8")


def contains(bits: Bitset, rows: np.ndarray) -> np.ndarray:
    """Return a boolean per row number: is that row's bit set?"""
    rows = np.asarray(rows, dtype=np.int64)
    shifts = (rows & (WORD_BITS - 1)).astype(np.uint64)
    return ((bits[rows >> 6] >> shifts) & np.uint64(1)).astype(np.bool_)


def popcount(bits: Bitset) -> int:
    # A uint32 sum of the per-word counts measured 25% faster than int64 and
    # cannot overflow below 2**32 rows. np.add.reduce calls the ufunc directly,
    # without ndarray.sum's Python wrapper.
    return int(np.add.reduce(np.bitwise_count(bits), dtype=np.uint32))


def rows_in_words(bits: Bitset, word_indices: np.ndarray) -> np.ndarray:
    """Return the ascending row numbers set in the given (ascending) words of bits."""
    chunk = np.ascontiguousarray(bits[word_indices])
    positions = np.flatnonzero(np.unpackbits(chunk.view(np.uint8), bitorder="little"))
    words = word_indices[positions >> 6].astype(np.int64)
    return words * WORD_BITS + (positions & (WORD_BITS - 1))


def _bit_positions_by_byte() -> np.ndarray:
    """Return a (256, 8) table: the set bit positions of each byte, -1 padded."""
    table = np.full((256, 8), -1, dtype=np.int64)
    for value in range(256):
        positions = [bit for bit in range(8) if value >> bit & 1]
        table[value, : len(positions)] = positions
    return table


_BIT_POSITIONS = _bit_positions_by_byte()


def rows(bits: Bitset) -> np.ndarray:
    """Return every set row number, ascending.

    When at most a quarter of the bytes are nonzero, a per-byte table of bit
    positions expands only those bytes, which measured about twice as fast
    as unpacking every bit at 2% density over 1,000,000 rows.
    """
    as_bytes = bits.view(np.uint8)
    nonzero = np.flatnonzero(as_bytes)
    if len(nonzero) * 4 > len(as_bytes):
        unpacked = np.unpackbits(as_bytes, bitorder="little")
        return np.flatnonzero(unpacked).astype(np.int64)
    positions = _BIT_POSITIONS[as_bytes[nonzero]]
    return (nonzero[:, None] * 8 + positions)[positions >= 0]


def select_page(bits: Bitset, offset: int, limit: int) -> np.ndarray:
    """Return the row numbers of set bits offset .. offset+limit-1, ascending.

    A cumulative popcount finds the words that hold those bits, so only those
    words are unpacked, however large the bitset is.
    """
    if limit <= 0 or len(bits) == 0:
        return np.zeros(0, dtype=np.int64)
    cumulative = np.cumsum(np.bitwise_count(bits), dtype=np.int64)
    total = int(cumulative[-1])
    if offset >= total:
        return np.zeros(0, dtype=np.int64)
    last = min(offset + limit, total) - 1
    first_word = int(np.searchsorted(cumulative, offset, side="right"))
    last_word = int(np.searchsorted(cumulative, last, side="right"))
    before = int(cumulative[first_word - 1]) if first_word else 0
    found = rows_in_words(bits, np.arange(first_word, last_word + 1))
    skip = offset - before
    return found[skip : skip + last - offset + 1]


def from_codes(codes: np.ndarray, n_values: int) -> np.ndarray:
    """Build one bitset per code value: a (n_values, n_words) matrix.

    Codes outside 0..n_values-1 (the missing-value code) set no bit. One
    compare-and-pack pass per value measured faster than a sort-based
    single pass up to 256 values on 1,000,000 rows (numpy 2.4).
    """
    n_words = word_count(len(codes))
    matrix = np.zeros((n_values, n_words), dtype="<u8")
    matrix_bytes = matrix.view(np.uint8)
    n_bytes = (len(codes) + 7) // 8
    for code in range(n_values):
        matrix_bytes[code, :n_bytes] = np.packbits(codes == code, bitorder="little")
    return matrix
