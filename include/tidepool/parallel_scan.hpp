#pragma once
// Prefix sums on a tidepool::pool: parallel_inclusive_scan and parallel_exclusive_scan.
//
//   std::vector<long> sums(v.size());
//   tidepool::parallel_inclusive_scan(pool, v.begin(), v.end(), sums.begin(), std::plus<>(), 0L);
//   // sums[k] == 0 + v[0] + ... + v[k]; the exclusive scan stops at v[k - 1] (sums[0] == init).
//
// Arguments in the order (first, last, out, op, init) for both: unlike std::exclusive_scan, which
// takes init before op. `op` must be associative (it need not be commutative); out may be first
// (in place), but no other overlap. Returns the end of the output.
//
// Two passes over the input, cut into blocks (8 per worker, plus one): the first pass scans
// block 0 and only sums the others, in parallel; the block totals are then folded in order on
// the calling thread; the second pass scans every other block from its prefix. That is three
// memory touches per element (read, read, write) against two for the serial scan, which pays
// once a second core is there: a memory-bound scan is the one case where the serial code is hard
// to beat, so this is where tidepool's scan must not fall behind oneTBB's.
//
// Iterators that are not random access, one worker, or short inputs: the serial std:: scan.

#include <cstddef>      // for std::size_t
#include <iterator>     // for std::random_access_iterator, std::iter_difference_t
#include <numeric>      // for std::inclusive_scan, std::exclusive_scan
#include <optional>     // for std::optional
#include <utility>      // for std::move
#include <vector>       // for std::vector

#include "tidepool/fork_join.hpp"
#include "tidepool/partitioner.hpp"
#include "tidepool/pool.hpp"

namespace tidepool {

namespace detail {

// Below this many elements a scan runs serially: the fork costs more than it saves.
inline constexpr std::size_t serial_scan_below = 1 << 14;

// Block b of [0, n) cut into `blocks` blocks of equal size (the first n % blocks one larger).
struct scan_blocks {
  std::size_t n;
  std::size_t blocks;
  [[nodiscard]] std::size_t begin(std::size_t b) const noexcept {
    const std::size_t q = n / blocks;
    const std::size_t r = n % blocks;
    return b * q + (b < r ? b : r);
  }
  [[nodiscard]] std::size_t end(std::size_t b) const noexcept { return begin(b + 1); }
};

// Scans in[from, to) into out[from, to) starting from `carry`, inclusive or exclusive; returns
// the carry after the block (carry op in[from] op ... op in[to - 1]).
template <bool inclusive, class It, class Out, class T, class Op>
T scan_block(It in, Out out, std::size_t from, std::size_t to, Op& op, T carry) {
  using difference = std::iter_difference_t<It>;
  for (std::size_t k = from; k < to; ++k) {
    const auto at = static_cast<difference>(k);
    if constexpr (inclusive) {
      carry = op(std::move(carry), in[at]);
      out[at] = carry;
    } else {
      auto value = in[at];  // read before the write: out may be in
      out[at] = carry;
      carry = op(std::move(carry), std::move(value));
    }
  }
  return carry;
}

template <bool inclusive, class It, class Out, class Op, class T>
Out parallel_scan(pool& p, It first, It last, Out out, Op& op, T init) {
  if constexpr (!std::random_access_iterator<It> || !std::random_access_iterator<Out>) {
    static_cast<void>(p);
    if constexpr (inclusive) return std::inclusive_scan(first, last, out, op, std::move(init));
    else return std::exclusive_scan(first, last, out, std::move(init), op);
  } else {
    const auto n = static_cast<std::size_t>(last - first);
    if (n < serial_scan_below || p.workers() == 1) {
      scan_block<inclusive>(first, out, 0, n, op, std::move(init));
      return out + static_cast<std::iter_difference_t<Out>>(n);
    }
    const scan_blocks cut{n, 8 * p.workers() + 1};
    std::vector<std::optional<T>> totals(cut.blocks - 1);  // block 0's includes init
    // Pass 1: block 0 scanned (its prefix is init), the others but the last summed.
    parallel_for(
        p, std::size_t{0}, cut.blocks - 1,
        [&](std::size_t b) {
          if (b == 0) {
            totals[0].emplace(scan_block<inclusive>(first, out, 0, cut.end(0), op, init));
            return;
          }
          using difference = std::iter_difference_t<It>;
          T sum = first[static_cast<difference>(cut.begin(b))];
          for (std::size_t k = cut.begin(b) + 1; k < cut.end(b); ++k) sum = op(std::move(sum), first[static_cast<difference>(k)]);
          totals[b].emplace(std::move(sum));
        },
        simple_partitioner{1});
    // The prefix of each block, in order: totals[b] becomes what precedes block b + 1.
    for (std::size_t b = 1; b + 1 < cut.blocks; ++b) totals[b].emplace(op(*totals[b - 1], std::move(*totals[b])));
    // Pass 2: every block but the first, from its prefix (totals[b - 1]).
    parallel_for(
        p, std::size_t{1}, cut.blocks,
        [&](std::size_t b) { scan_block<inclusive>(first, out, cut.begin(b), cut.end(b), op, std::move(*totals[b - 1])); },
        simple_partitioner{1});
    return out + static_cast<std::iter_difference_t<Out>>(n);
  }
}

}  // namespace detail

// out[k] = init op in[0] op ... op in[k], for every k; returns out + (last - first).
template <class It, class Out, class T, class Op>
Out parallel_inclusive_scan(pool& p, It first, It last, Out out, Op op, T init) {
  return detail::parallel_scan<true>(p, first, last, out, op, std::move(init));
}

// out[k] = init op in[0] op ... op in[k - 1] (out[0] = init); returns out + (last - first).
template <class It, class Out, class T, class Op>
Out parallel_exclusive_scan(pool& p, It first, It last, Out out, Op op, T init) {
  return detail::parallel_scan<false>(p, first, last, out, op, std::move(init));
}

}  // namespace tidepool
