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
// Adaptive, like oneTBB's parallel_scan: the input is cut into blocks (16 per worker), run as
// the leaves of a fork tree. A block whose predecessor's prefix is known when it starts is
// scanned at once: one pass, as serially. A block a thief starts early is only summed; once all
// are done, the sums are folded in order on the calling thread and the summed blocks scanned in
// a second parallel pass. So without stealing (one busy core) the scan costs what the serial one
// does (read + write once), and with it, the stolen part costs one read more.
//
// Iterators that are not random access, one worker, or short inputs: the serial std:: scan.

#include <atomic>       // for std::atomic
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

// What one block left for the others: whether it was scanned (its predecessor's prefix was
// known when it started) or only summed, and the prefix through it or its own sum.
template <class T>
struct scan_block_state {
  std::atomic<bool> prefix_known{false};  // release by the block's runner, acquire by the next
  std::optional<T> value;  // the prefix through this block if prefix_known, else its sum
};

template <bool inclusive, class It, class Out, class Op, class T>
Out parallel_scan(pool& p, It first, It last, Out out, Op& op, T init) {
  if constexpr (!std::random_access_iterator<It> || !std::random_access_iterator<Out>) {
    static_cast<void>(p);
    if constexpr (inclusive) return std::inclusive_scan(first, last, out, op, std::move(init));
    else return std::exclusive_scan(first, last, out, std::move(init), op);
  } else {
    const auto n = static_cast<std::size_t>(last - first);
    const auto end = out + static_cast<std::iter_difference_t<Out>>(n);
    if (n < serial_scan_below || p.workers() == 1) {
      scan_block<inclusive>(first, out, 0, n, op, std::move(init));
      return end;
    }
    const scan_blocks cut{n, 16 * p.workers()};
    std::vector<scan_block_state<T>> blocks(cut.blocks);
    // Pass 1, over the blocks in a fork tree whose leaves one worker runs in index order: a block
    // whose predecessor's prefix is already known is scanned at once (one pass over it, as
    // serially); a block that starts before that (a thief's) is only summed. With nobody
    // stealing, every block is scanned here and no second pass is needed.
    parallel_for(
        p, std::size_t{0}, cut.blocks,
        [&](std::size_t b) {
          scan_block_state<T>& mine = blocks[b];
          if (b == 0 || blocks[b - 1].prefix_known.load(std::memory_order_acquire)) {
            const T& prefix = b == 0 ? init : *blocks[b - 1].value;
            mine.value.emplace(scan_block<inclusive>(first, out, cut.begin(b), cut.end(b), op, prefix));
            mine.prefix_known.store(true, std::memory_order_release);
            return;
          }
          using difference = std::iter_difference_t<It>;
          T sum = first[static_cast<difference>(cut.begin(b))];
          for (std::size_t k = cut.begin(b) + 1; k < cut.end(b); ++k) sum = op(std::move(sum), first[static_cast<difference>(k)]);
          mine.value.emplace(std::move(sum));
        },
        simple_partitioner{1});
    // The prefixes of the summed blocks, in order (parallel_for's return ordered pass 1 before).
    std::vector<std::size_t> summed;
    for (std::size_t b = 1; b < cut.blocks; ++b) {
      if (blocks[b].prefix_known.load(std::memory_order_relaxed)) continue;
      summed.push_back(b);
      blocks[b].value.emplace(op(*blocks[b - 1].value, std::move(*blocks[b].value)));  // now the prefix through b
    }
    // Pass 2: the summed blocks, each from the prefix through its predecessor.
    parallel_for(
        p, std::size_t{0}, summed.size(),
        [&](std::size_t k) {
          const std::size_t b = summed[k];
          scan_block<inclusive>(first, out, cut.begin(b), cut.end(b), op, *blocks[b - 1].value);
        },
        simple_partitioner{1});
    return end;
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
