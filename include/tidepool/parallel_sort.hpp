#pragma once
// Sorting on a tidepool::pool: parallel_sort, a parallel merge sort.
//
//   tidepool::parallel_sort(pool, v.begin(), v.end());                    // ascending
//   tidepool::parallel_sort(pool, v.begin(), v.end(), std::greater<>());  // any strict weak order
//
// Not stable (like std::sort). Needs random-access iterators whose values can be default
// constructed and moved; otherwise, and for short inputs, it is std::sort; for one worker too,
// except for strings (below).
//
// How: the input is cut into P pieces (P a power of four, at least twice the workers), each
// sorted by std::sort in parallel; then log2(P) rounds of pairwise merges, from the input into a
// buffer of the same size and back, so that an even number of rounds leaves the result in place
// without a final copy. Every round is fully parallel however few merges it has left: a merge
// is cut into parts at equal output positions, each part's inputs found by a binary search on
// the two runs (the "merge path"), so the last round, one merge of everything, still keeps all
// workers busy. Why not quicksort with a parallel partition (oneTBB's parallel_sort partitions
// its top levels serially), or a sample sort (one scatter pass, but skewed buckets on inputs with
// many equal keys)? Merge sort's pieces are equal by construction on any input: on two cores
// shared with other work, balance matters more than the one extra pass over memory per round.
//
// Strings (std::string, std::string_view; any allocator whose moves cannot throw) in their
// natural order (no comparator, std::less or std::ranges::less) are sorted by key: each
// string's first 8 bytes as one big-endian integer, beside its position. The keys are merge
// sorted as above, comparing the strings themselves only where two prefixes are equal, and the
// strings then moved once into their places. Sorting the strings directly, most of the time goes
// to comparisons, each a memcmp call behind two string objects and, for strings longer than the
// 15 bytes stored inline, two heap blocks, visited in an order unrelated to memory; an integer
// comparison of two 16-byte keys that lie next to the others costs a fraction of that, at any
// worker count, one included (bench_algorithms' sort_string: about 3× less time). Strings that
// mostly share their first 8 bytes fall back to comparing the strings, and then cost about what
// sorting them directly does, plus the moves into place.
//
// Extra memory: one buffer of last - first values (default constructed; for trivial types left
// uninitialised); for strings, two arrays of 16-byte keys and one of last - first values.

#include <algorithm>    // for std::sort, std::merge
#include <concepts>     // for std::default_initializable, std::movable, std::same_as
#include <cstddef>      // for std::size_t
#include <cstdint>      // for std::uint64_t
#include <cstring>      // for std::memcpy
#include <functional>   // for std::less, std::ranges::less
#include <iterator>     // for std::random_access_iterator, std::iter_value_t, std::iter_reference_t, std::make_move_iterator
#include <memory>       // for std::make_unique_for_overwrite, std::allocator, std::construct_at, std::destroy_at
#include <string>       // for std::basic_string, std::char_traits
#include <string_view>  // for std::string_view
#include <type_traits>  // for std::is_nothrow_move_constructible_v, std::is_nothrow_move_assignable_v
#include <vector>       // for std::vector

#include "tidepool/fork_join.hpp"
#include "tidepool/partitioner.hpp"
#include "tidepool/pool.hpp"

namespace tidepool {

namespace detail {

// Below this many elements parallel_sort is std::sort: the buffer and the forks cost more.
inline constexpr std::size_t serial_sort_below = 1 << 14;

// How many of the first merge_output_position elements of merge(a, b) come from a (std::merge's
// order: on equal keys, a's first). The smallest i whose a[i] sorts strictly after b[d - i - 1].
template <class A, class B, class Cmp>
std::size_t merge_path(A a, std::size_t a_size, B b, std::size_t b_size, std::size_t merge_output_position, Cmp& cmp) {
  const std::size_t d = merge_output_position;
  std::size_t lo = d > b_size ? d - b_size : 0;
  std::size_t hi = d < a_size ? d : a_size;
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    if (cmp(b[d - mid - 1], a[mid])) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// One round: the sorted runs of `run` elements in from[0, n) merged pairwise into to[0, n),
// every merge cut into `parts` parts of equal output size. Where each part starts in the first
// run is found for all parts before any part moves a value: a binary search running beside a
// merge that has already moved values out of its runs would compare moved-from values.
template <class From, class To, class Cmp>
void merge_round(pool& p, From from, To to, std::size_t n, std::size_t run, std::size_t parts, Cmp& cmp) {
  const std::size_t merges = (n + 2 * run - 1) / (2 * run);
  struct part_bounds {
    std::size_t a_begin;   // where the merge's first run starts in `from`
    std::size_t a_size;     // the second run follows the first
    std::size_t out_begin;  // of this part, counted from a_begin
    std::size_t a_from;     // how many of the first run's values come before out_begin
  };
  std::vector<part_bounds> bounds;
  bounds.reserve(merges * (parts + 1));
  for (std::size_t merge = 0; merge < merges; ++merge) {
    const std::size_t a_begin = merge * 2 * run;
    const std::size_t a_size = run < n - a_begin ? run : n - a_begin;
    const std::size_t b_begin = a_begin + a_size;
    const std::size_t b_size = run < n - b_begin ? run : n - b_begin;
    const std::size_t total = a_size + b_size;
    const auto a = from + static_cast<std::ptrdiff_t>(a_begin);
    const auto b = from + static_cast<std::ptrdiff_t>(b_begin);
    for (std::size_t part = 0; part <= parts; ++part) {  // parts + 1 boundaries
      const std::size_t out_begin = total / parts * part + (total % parts) * part / parts;
      bounds.push_back({a_begin, a_size, out_begin, merge_path(a, a_size, b, b_size, out_begin, cmp)});
    }
  }
  parallel_for(
      p, std::size_t{0}, merges * parts,
      [&](std::size_t job) {
        const part_bounds& start = bounds[job / parts * (parts + 1) + job % parts];
        const part_bounds& stop = (&start)[1];
        const auto at = [](auto base, std::size_t k) { return base + static_cast<std::ptrdiff_t>(k); };
        const auto a = at(from, start.a_begin);
        const auto b = at(a, start.a_size);
        std::merge(std::make_move_iterator(at(a, start.a_from)), std::make_move_iterator(at(a, stop.a_from)),
                   std::make_move_iterator(at(b, start.out_begin - start.a_from)),
                   std::make_move_iterator(at(b, stop.out_begin - stop.a_from)), at(at(to, start.a_begin), start.out_begin), cmp);
      },
      simple_partitioner{1});
}

// The merge sort described at the top, for any value type and order.
template <class It, class Cmp>
void merge_sort(pool& p, It first, It last, Cmp& cmp) {
  using value = std::iter_value_t<It>;
  const auto n = static_cast<std::size_t>(last - first);
  const std::size_t workers = p.workers();
  if (n < serial_sort_below || workers == 1) {
    std::sort(first, last, cmp);
    return;
  }
  std::size_t pieces = 4;
  while (pieces < 2 * workers) pieces *= 4;
  const std::size_t run = (n + pieces - 1) / pieces;
  parallel_for(
      p, std::size_t{0}, pieces,
      [&](std::size_t piece) {
        const std::size_t from = piece * run < n ? piece * run : n;
        const std::size_t to = from + run < n ? from + run : n;
        std::sort(first + static_cast<std::ptrdiff_t>(from), first + static_cast<std::ptrdiff_t>(to), cmp);
      },
      simple_partitioner{1});
  const auto buffer = std::make_unique_for_overwrite<value[]>(n);
  bool in_buffer = false;
  for (std::size_t width = run; width < n; width *= 2) {
    const std::size_t merges = (n + 2 * width - 1) / (2 * width);
    const std::size_t parts = (4 * workers + merges - 1) / merges;  // about 4 per worker in all
    if (in_buffer) {
      merge_round(p, buffer.get(), first, n, width, parts, cmp);
    } else {
      merge_round(p, first, buffer.get(), n, width, parts, cmp);
    }
    in_buffer = !in_buffer;
  }
  if (in_buffer) {  // an odd number of rounds: only when the last pieces were empty
    parallel_for(
        p, std::size_t{0}, n, [&](std::size_t k) { first[static_cast<std::ptrdiff_t>(k)] = std::move(buffer[k]); },
        static_partitioner{});
  }
}

// --- Strings in their natural order, sorted by key (see the top).

template <class T>
inline constexpr bool is_char_string = false;
template <class Allocator>
inline constexpr bool is_char_string<std::basic_string<char, std::char_traits<char>, Allocator>> = true;
template <>
inline constexpr bool is_char_string<std::string_view> = true;

// Orders that are the strings' operator<, i.e. char_traits<char>::compare: bytes as unsigned char,
// a proper prefix first.
template <class Cmp, class Value>
inline constexpr bool is_natural_order = std::same_as<Cmp, std::less<>> || std::same_as<Cmp, std::less<Value>> || std::same_as<Cmp, std::ranges::less>;

struct string_key {
  // The first 8 bytes, the first one highest, zero-padded: for any strings a < b implies
  // prefix(a) <= prefix(b), so unequal prefixes decide, and equal ones ("ab" and "ab\0" too)
  // leave it to the strings.
  std::uint64_t prefix;
  std::size_t position;  // in the input
};

[[nodiscard]] inline std::uint64_t big_endian_prefix(const char* data, std::size_t size) noexcept {
  unsigned char bytes[8] = {};
  std::memcpy(bytes, data, size < 8 ? size : 8);
  std::uint64_t prefix = 0;
  for (const unsigned char byte : bytes) prefix = prefix << 8 | byte;
  return prefix;
}

template <class It>
void sort_strings_by_key(pool& p, It first, std::size_t n) {
  using value = std::iter_value_t<It>;
  const auto at = [first](std::size_t k) -> std::iter_reference_t<It> { return first[static_cast<std::ptrdiff_t>(k)]; };
  const auto keys = std::make_unique_for_overwrite<string_key[]>(n);
  parallel_for(
      p, std::size_t{0}, n,
      [&](std::size_t k) {
        const value& s = at(k);
        keys[k] = {big_endian_prefix(s.data(), s.size()), k};
      },
      static_partitioner{});
  // The strings stay where they are until every key is in place, so a tie can look them up.
  auto by_string = [at](const string_key& a, const string_key& b) {
    return a.prefix != b.prefix ? a.prefix < b.prefix : at(a.position) < at(b.position);
  };
  merge_sort(p, keys.get(), keys.get() + n, by_string);
  // Gathered into raw storage (moves of these strings never throw), then moved back in order.
  std::allocator<value> allocator;
  value* const sorted = allocator.allocate(n);
  parallel_for(
      p, std::size_t{0}, n, [&](std::size_t k) { std::construct_at(sorted + k, std::move(at(keys[k].position))); },
      static_partitioner{});
  parallel_for(
      p, std::size_t{0}, n,
      [&](std::size_t k) {
        at(k) = std::move(sorted[k]);
        std::destroy_at(sorted + k);
      },
      static_partitioner{});
  allocator.deallocate(sorted, n);
}

}  // namespace detail

template <std::random_access_iterator It, class Cmp = std::less<>>
void parallel_sort(pool& p, It first, It last, Cmp cmp = {}) {
  using value = std::iter_value_t<It>;
  const auto n = static_cast<std::size_t>(last - first);
  if constexpr (!std::default_initializable<value> || !std::movable<value>) {
    static_cast<void>(p);
    std::sort(first, last, cmp);
  } else if constexpr (detail::is_char_string<value> && detail::is_natural_order<Cmp, value> &&
                       std::is_nothrow_move_constructible_v<value> && std::is_nothrow_move_assignable_v<value>) {
    if (n < detail::serial_sort_below) {
      std::sort(first, last, cmp);
    } else {
      detail::sort_strings_by_key(p, first, n);
    }
  } else {
    detail::merge_sort(p, first, last, cmp);
  }
}

}  // namespace tidepool
