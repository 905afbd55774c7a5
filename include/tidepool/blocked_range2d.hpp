#pragma once
// Two-dimensional iteration spaces: a grid of rows × columns that parallel_for cuts into tiles,
// so that a kernel walks a tile that fits the cache (stencils, matrix products, images).
//
//   tidepool::parallel_for(pool, tidepool::blocked_range2d<int>(1, n - 1, 1, n - 1),
//                          [&](tidepool::index_range<int> rows, tidepool::index_range<int> cols) {
//                            for (int i : rows)
//                              for (int j : cols) next[i * n + j] = (a[(i - 1) * n + j] + ...) / 4;
//                          });
//   tidepool::parallel_for(pool, tidepool::blocked_range2d<int>(0, h, 0, w), [&](int i, int j) { ... });
//
// A tile is split in two across its longer side, measured in grains (oneTBB's rule), so tiles
// stay close to square. The per-dimension grains are the smallest extent split() leaves; the
// partitioner (partitioner.hpp) decides how far to split: auto lazily (its grain counts cells;
// while the worker's deque is busy it runs a slice of rows of about that many cells), static into
// `chunks` pieces of about equal size (strips of whole rows while there are at least as many rows
// as chunks, see split_at), simple until a tile has at most `grain` cells and no side is longer
// than its grain allows.

#include <cstddef>      // for std::size_t
#include <cstdint>      // for SIZE_MAX
#include <iterator>     // for std::forward_iterator_tag
#include <type_traits>  // for std::is_invocable_v, std::remove_reference_t
#include <utility>      // for std::pair

#include "tidepool/fork_join.hpp"
#include "tidepool/partitioner.hpp"
#include "tidepool/pool.hpp"

namespace tidepool {

// The indices [first, last) of one dimension, to iterate over: for (int i : rows).
template <detail::loop_index Index>
class index_range {
 public:
  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Index;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Index;

    iterator() noexcept = default;
    explicit iterator(Index at) noexcept : at_(at) {}
    Index operator*() const noexcept { return at_; }
    iterator& operator++() noexcept {
      ++at_;  // at most to `last`, which Index can express
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator before = *this;
      ++at_;
      return before;
    }
    friend bool operator==(iterator a, iterator b) noexcept { return a.at_ == b.at_; }

   private:
    Index at_{};
  };

  index_range(Index first, Index last) noexcept : first_(first), last_(last) {}
  [[nodiscard]] Index first() const noexcept { return first_; }
  [[nodiscard]] Index last() const noexcept { return last_; }
  [[nodiscard]] bool empty() const noexcept { return !(first_ < last_); }
  [[nodiscard]] std::size_t size() const noexcept {
    const auto n = empty() ? detail::index_offset<Index>{0} : detail::distance(first_, last_);
    return n < static_cast<detail::index_offset<Index>>(SIZE_MAX) ? static_cast<std::size_t>(n) : SIZE_MAX;
  }
  [[nodiscard]] iterator begin() const noexcept { return iterator(first_); }
  [[nodiscard]] iterator end() const noexcept { return iterator(empty() ? first_ : last_); }

 private:
  Index first_;
  Index last_;
};

// Rows [i_first, i_last) × columns [j_first, j_last). Grains: the smallest number of rows
// (columns) a split leaves in a tile (0 counts as 1).
template <detail::loop_index I, detail::loop_index J = I>
class blocked_range2d {
 public:
  blocked_range2d(I i_first, I i_last, J j_first, J j_last) noexcept : blocked_range2d(i_first, i_last, 1, j_first, j_last, 1) {}
  blocked_range2d(I i_first, I i_last, std::size_t i_grain, J j_first, J j_last, std::size_t j_grain) noexcept
      : rows_{i_first, 0, i_first < i_last ? detail::distance(i_first, i_last) : 0},
        cols_{j_first, 0, j_first < j_last ? detail::distance(j_first, j_last) : 0},
        i_grain_(i_grain > 0 ? i_grain : 1),
        j_grain_(j_grain > 0 ? j_grain : 1) {}

  [[nodiscard]] index_range<I> rows() const noexcept { return {rows_.begin_index(), rows_.end_index()}; }
  [[nodiscard]] index_range<J> cols() const noexcept { return {cols_.begin_index(), cols_.end_index()}; }
  [[nodiscard]] bool empty() const noexcept { return rows_.size() == 0 || cols_.size() == 0; }

  // --- The range interface of detail::divide (fork_join.hpp).
  [[nodiscard]] std::size_t size() const noexcept {
    const std::size_t r = rows_.size();
    const std::size_t c = cols_.size();
    return c != 0 && r > SIZE_MAX / c ? SIZE_MAX : r * c;
  }
  [[nodiscard]] bool divisible(std::size_t grain) const noexcept {
    return size() > grain && (rows_.size() > i_grain_ || cols_.size() > j_grain_);
  }
  [[nodiscard]] std::pair<blocked_range2d, blocked_range2d> split() const noexcept {
    // Across the side that is longer in grains (rows / i_grain against cols / j_grain), among
    // the sides longer than their grain.
    const bool rows_divisible = rows_.size() > i_grain_;
    const bool cols_divisible = cols_.size() > j_grain_;
    const bool across_rows = rows_divisible && (!cols_divisible || static_cast<double>(rows_.size()) * static_cast<double>(j_grain_) >=
                                                                       static_cast<double>(cols_.size()) * static_cast<double>(i_grain_));
    return across_rows ? with<&blocked_range2d::rows_>(rows_.split()) : with<&blocked_range2d::cols_>(cols_.split());
  }
  // The first num/den of the range and the rest, never leaving either part empty (the static
  // partitioner's cut, into den pieces). Across the rows while there are at least den of them,
  // so that every piece is a strip of whole rows: one contiguous block of a row-major array,
  // inner loops as long as the rows, and only the cache lines at a strip's two edges touched by
  // two workers. Cutting across the longer side instead (as split() does) gives square tiles
  // whose rows are cut short, each row of the array touched by several pieces, each a stream
  // the prefetcher starts again. Fewer rows than pieces: the longer side.
  [[nodiscard]] std::pair<blocked_range2d, blocked_range2d> split_at(std::size_t num, std::size_t den) const noexcept {
    const bool across_rows = rows_.size() >= den || rows_.size() >= cols_.size();
    return across_rows ? with<&blocked_range2d::rows_>(nonempty_split(rows_, num, den)) : with<&blocked_range2d::cols_>(nonempty_split(cols_, num, den));
  }
  // A slice of whole rows with about `grain` cells (at least one row); of columns for one row.
  [[nodiscard]] std::pair<blocked_range2d, blocked_range2d> peel(std::size_t grain) const noexcept {
    if (rows_.size() > 1) {
      const std::size_t per_row = cols_.size();
      const std::size_t rows = grain / per_row > 0 ? grain / per_row : 1;
      return with<&blocked_range2d::rows_>(rows_.peel(rows < rows_.size() ? rows : rows_.size() - 1));
    }
    return with<&blocked_range2d::cols_>(cols_.peel(grain < cols_.size() ? grain : cols_.size() - 1));
  }

 private:
  template <class Span>
  static std::pair<Span, Span> nonempty_split(const Span& s, std::size_t num, std::size_t den) noexcept {
    auto [front, back] = s.split_at(num, den);
    if (front.hi == front.lo) return s.peel(1);
    if (back.hi == back.lo) return s.peel(s.size() - 1);
    return {front, back};
  }
  // Two copies of this range, with the side `side` (rows_ or cols_) replaced by the two halves.
  template <auto side, class Span>
  [[nodiscard]] std::pair<blocked_range2d, blocked_range2d> with(std::pair<Span, Span> halves) const noexcept {
    std::pair<blocked_range2d, blocked_range2d> parts{*this, *this};
    parts.first.*side = halves.first;
    parts.second.*side = halves.second;
    return parts;
  }
  detail::index_span<I> rows_;
  detail::index_span<J> cols_;
  std::size_t i_grain_;
  std::size_t j_grain_;
};

namespace detail {

template <class I, class J, class F>
struct tile_body {
  F& f;
  no_value leaf(const blocked_range2d<I, J>& tile) {
    if constexpr (std::is_invocable_v<F&, index_range<I>, index_range<J>>) {
      f(tile.rows(), tile.cols());
    } else {
      leaf_callable<F> call = f;  // a local, as in fork_join.hpp's for_body
      const index_range<J> cols = tile.cols();
      for (const I i : tile.rows()) {
        for (const J j : cols) call(i, j);
      }
    }
    return {};
  }
  static no_value join(no_value, no_value) noexcept { return {}; }
};

}  // namespace detail

// Calls f(rows, cols) for tiles that cover `range` exactly once, or, if f takes two indices,
// f(i, j) for every cell; in parallel, tiles cut as `part` says.
template <class I, class J, class F, partitioner Partitioner = auto_partitioner>
  requires std::is_invocable_v<std::remove_reference_t<F>&, index_range<I>, index_range<J>> ||
           std::is_invocable_v<std::remove_reference_t<F>&, I, J>
void parallel_for(pool& p, const blocked_range2d<I, J>& range, F&& f, Partitioner part = {}) {
  if (range.empty()) return;
  detail::tile_body<I, J, std::remove_reference_t<F>> body{f};
  detail::divide<detail::no_value>(p, range, body, part);
}

}  // namespace tidepool
