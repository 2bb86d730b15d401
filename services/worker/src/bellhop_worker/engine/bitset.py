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
    positions = _set_positions(chunk)
    words = word_indices[positions >> 6].astype(np.int64, copy=False)
    return words * WORD_BITS + (positions & (WORD_BITS - 1))


def nonzero_words(bits: Bitset) -> np.ndarray:
    """Return the indices of the words that contain a row, ascending."""
    # np.flatnonzero takes a fast path for booleans only. On uint64 words it
    # measured 3 to 4 times slower than this comparison and call together.
    return np.flatnonzero(bits != 0)


def rows(bits: Bitset) -> np.ndarray:
    """Return every set row number, ascending.

    When at least half of the words from the first to the last nonzero one
    contain a row, that whole span is unpacked. Otherwise only the nonzero
    words are gathered and unpacked.
    """
    words = nonzero_words(bits)
    if len(words) == 0:
        return np.zeros(0, dtype=np.int64)
    first, last = int(words[0]), int(words[-1])
    if (last - first + 1) > 2 * len(words):
        return rows_in_words(bits, words)
    positions = _set_positions(bits[first : last + 1])
    # positions is a new array, so adding in place saves an allocation.
    positions += first * WORD_BITS
    return positions


def _set_positions(words: np.ndarray) -> np.ndarray:
    """Return the positions of the set bits of contiguous words, as int64."""
    unpacked = np.unpackbits(words.view(np.uint8), bitorder="little")
    # unpackbits returns 0 or 1 per bit, so the boolean view is exact, and
    # flatnonzero is much faster on booleans than on uint8.
    return np.flatnonzero(unpacked.view(np.bool_))


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
