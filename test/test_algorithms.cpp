// Compute algorithms: parallel_for and parallel_reduce with any integer index type (ranges at the
// edges of the type, and longer than INT_MAX) and each partitioner; blocked_range2d;
// parallel_inclusive_scan / parallel_exclusive_scan; parallel_sort. Correctness only.

#include <gtest/gtest.h>

#include <algorithm>   // for std::min, std::max, std::sort, std::reverse, std::is_sorted
#include <atomic>      // for std::atomic
#include <chrono>      // for std::chrono::microseconds
#include <climits>     // for INT_MIN, INT_MAX, LLONG_MIN, UINT_MAX, SCHAR_MIN, SHRT_MIN, ...
#include <cstddef>     // for std::size_t
#include <cstdint>     // for std::uint64_t
#include <functional>  // for std::plus, std::greater, std::less, std::ranges::less
#include <list>        // for std::list
#include <memory>      // for std::unique_ptr, std::make_unique
#include <mutex>       // for std::mutex, std::lock_guard
#include <numeric>     // for std::inclusive_scan, std::exclusive_scan
#include <random>      // for std::mt19937_64
#include <stdexcept>   // for std::runtime_error
#include <string>      // for std::string, std::to_string
#include <string_view>  // for std::string_view
#include <thread>      // for std::this_thread::sleep_for
#include <type_traits>  // for std::make_unsigned_t
#include <utility>     // for std::pair
#include <vector>      // for std::vector

#include "pool_options_for_tests.hpp"
#include "stress_config.hpp"
#include "tidepool/blocked_range2d.hpp"
#include "tidepool/fork_join.hpp"
#include "tidepool/parallel_scan.hpp"
#include "tidepool/parallel_sort.hpp"
#include "tidepool/partitioner.hpp"
#include "tidepool/pool.hpp"

namespace {

using tidepool::pool;
using tidepool::testing::with_workers;

// Runs `check(partitioner, name)` once with each partitioner, small grains included so that the
// ranges really are cut.
template <class Check>
void for_each_partitioner(Check check) {
  check(tidepool::auto_partitioner{}, "auto");
  check(tidepool::auto_partitioner{3}, "auto{3}");
  check(tidepool::static_partitioner{}, "static");
  check(tidepool::static_partitioner{7}, "static{7}");
  check(tidepool::simple_partitioner{}, "simple");
  check(tidepool::simple_partitioner{5}, "simple{5}");
}

// parallel_for over [first, last) calls f once for each index and never outside it; the same
// range summed by parallel_reduce (as offsets from first) gives the serial sum.
template <class Index>
void expect_every_index_once(pool& p, Index first, Index last) {
  using unsigned_index = std::make_unsigned_t<Index>;
  const auto length = static_cast<std::size_t>(static_cast<unsigned_index>(static_cast<unsigned_index>(last) - static_cast<unsigned_index>(first)));
  for_each_partitioner([&](auto partitioner, const char* name) {
    std::vector<std::atomic<int>> hits(length);
    std::atomic<bool> outside{false};
    tidepool::parallel_for(
        p, first, last,
        [&](Index i) {
          if (i < first || i >= last) {
            outside.store(true);
            return;
          }
          const auto offset = static_cast<unsigned_index>(static_cast<unsigned_index>(i) - static_cast<unsigned_index>(first));
          hits[offset].fetch_add(1, std::memory_order_relaxed);
        },
        partitioner);
    EXPECT_FALSE(outside.load()) << name;
    for (std::size_t k = 0; k < length; ++k) ASSERT_EQ(hits[k].load(), 1) << name << " offset " << k << " of " << length;

    const std::uint64_t offsets_sum = tidepool::parallel_reduce(
        p, first, last, std::uint64_t{0},
        [&](Index i) { return static_cast<std::uint64_t>(static_cast<unsigned_index>(static_cast<unsigned_index>(i) - static_cast<unsigned_index>(first))); },
        std::plus<>(), partitioner);
    EXPECT_EQ(offsets_sum, std::uint64_t{length} * (length - 1) / 2) << name;
  });
}

TEST(IndexTypes, EveryIndexOfEveryNarrowTypeIsVisitedOnceWithEachPartitioner) {
  pool p(with_workers(2));
  expect_every_index_once<signed char>(p, SCHAR_MIN, SCHAR_MAX);
  expect_every_index_once<unsigned char>(p, 0, UCHAR_MAX);
  expect_every_index_once<short>(p, SHRT_MIN, SHRT_MAX);
  expect_every_index_once<unsigned short>(p, 0, USHRT_MAX);
}

TEST(IndexTypes, RangesAtTheEdgesOfIntLongLongAndUnsignedVisitEveryIndexOnce) {
  pool p(with_workers(2));
  expect_every_index_once<int>(p, INT_MIN, INT_MIN + 1000);
  expect_every_index_once<int>(p, INT_MAX - 1000, INT_MAX);
  expect_every_index_once<int>(p, -500, 500);
  expect_every_index_once<long long>(p, LLONG_MIN, LLONG_MIN + 1000);
  expect_every_index_once<long long>(p, LLONG_MAX - 1000, LLONG_MAX);
  expect_every_index_once<unsigned>(p, 0, 1000);
  expect_every_index_once<unsigned>(p, UINT_MAX - 1000, UINT_MAX);
  expect_every_index_once<unsigned>(p, UINT_MAX / 2 - 500, UINT_MAX / 2 + 500);
  expect_every_index_once<unsigned long long>(p, ULLONG_MAX - 1000, ULLONG_MAX);
}

// [INT_MIN, INT_MAX): 2^32 - 1 indices, more than INT_MAX. Counting every index would take
// minutes; every index a multiple of 2^16 is counted instead (2^16 of them), and the first and
// last are seen: an index repeated, skipped in whole pieces, or wrapped around shows up there.
TEST(IndexTypes, TheWholeIntRangeIsVisitedWithoutOverflow) {
  pool p(with_workers(2));
  auto check = [&](auto partitioner, const char* name) {
    std::atomic<long> multiples{0};
    std::atomic<bool> saw_first{false};
    std::atomic<bool> saw_last{false};
    tidepool::parallel_for(
        p, INT_MIN, INT_MAX,
        [&](int i) {
          if ((i & 0xFFFF) == 0) multiples.fetch_add(1, std::memory_order_relaxed);
          if (i == INT_MIN) saw_first.store(true);
          if (i == INT_MAX - 1) saw_last.store(true);
        },
        partitioner);
    EXPECT_EQ(multiples.load(), 65536) << name;
    EXPECT_TRUE(saw_first.load()) << name;
    EXPECT_TRUE(saw_last.load()) << name;
  };
  check(tidepool::auto_partitioner{}, "auto");
#if !defined(TIDEPOOL_SANITIZED)  // 2^32 calls each (40 s under UBSan): the sanitizer builds check one loop
  check(tidepool::static_partitioner{}, "static");

  struct extent {
    long long count;
    int min;
    int max;
  };
  const extent all = tidepool::parallel_reduce(
      p, INT_MIN, INT_MAX, extent{0, INT_MAX, INT_MIN}, [](int i) { return extent{1, i, i}; },
      [](extent a, extent b) { return extent{a.count + b.count, std::min(a.min, b.min), std::max(a.max, b.max)}; });
  EXPECT_EQ(all.count, (1LL << 32) - 1);
  EXPECT_EQ(all.min, INT_MIN);
  EXPECT_EQ(all.max, INT_MAX - 1);
#endif
}

TEST(Partitioners, ReduceCombinesInIndexOrderWithEachPartitioner) {
  pool p(with_workers(2));
  const int n = 3000;
  std::string expected;
  for (int i = 0; i < n; ++i) expected += static_cast<char>('a' + i % 26);
  for_each_partitioner([&](auto partitioner, const char* name) {
    const std::string joined = tidepool::parallel_reduce(
        p, 0, n, std::string(">"), [](int i) { return std::string(1, static_cast<char>('a' + i % 26)); },
        [](std::string a, const std::string& b) { return a += b; }, partitioner);
    EXPECT_EQ(joined, ">" + expected) << name;
  });
}

TEST(Partitioners, EachWorksFromInsideATaskAndRethrowsTheBodysException) {
  pool p(with_workers(2));
  for_each_partitioner([&](auto partitioner, const char* name) {
    const long sum = p.submit([&] {
                        return tidepool::parallel_reduce(p, 0, 10000, 0L, [](int i) { return long{i}; }, std::plus<>(), partitioner);
                      }).get();
    EXPECT_EQ(sum, 10000L * 9999 / 2) << name;
    EXPECT_THROW(tidepool::parallel_for(
                     p, 0, 1000,
                     [](int i) {
                       if (i == 777) throw std::runtime_error("777");
                     },
                     partitioner),
                 std::runtime_error)
        << name;
  });
}

// The pieces a partitioner cuts [0, n) into, in index order, seen through the implementation's
// dividing step (detail::divide) with a body that records each piece.
struct piece_recorder {
  using pieces = std::vector<std::pair<std::size_t, std::size_t>>;
  pieces leaf(const tidepool::detail::index_span<std::size_t>& r) { return {{r.begin_index(), r.end_index()}}; }
  static pieces join(pieces a, const pieces& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }
};

template <class Partitioner>
piece_recorder::pieces pieces_of(pool& p, std::size_t n, Partitioner part) {
  piece_recorder body;
  return tidepool::detail::divide<piece_recorder::pieces>(p, tidepool::detail::index_span<std::size_t>{0, 0, n}, body, part);
}

void expect_contiguous_cover(const piece_recorder::pieces& pieces, std::size_t n) {
  std::size_t next = 0;
  for (const auto& [from, to] : pieces) {
    ASSERT_EQ(from, next);
    ASSERT_LT(from, to);
    next = to;
  }
  EXPECT_EQ(next, n);
}

TEST(Partitioners, StaticCutsExactlyTheAskedChunksOfEqualSize) {
  pool p(with_workers(2));
  for (std::size_t n : {1U, 5U, 7U, 100U, 1001U}) {
    for (std::size_t chunks : {1U, 2U, 3U, 7U, 64U}) {
      const auto pieces = pieces_of(p, n, tidepool::static_partitioner{chunks});
      expect_contiguous_cover(pieces, n);
      ASSERT_EQ(pieces.size(), std::min(n, chunks)) << "n " << n << " chunks " << chunks;
      for (const auto& [from, to] : pieces) {
        EXPECT_GE(to - from, n / pieces.size()) << "n " << n << " chunks " << chunks;
        EXPECT_LE(to - from, n / pieces.size() + 1) << "n " << n << " chunks " << chunks;
      }
    }
  }
  EXPECT_EQ(pieces_of(p, 1000, tidepool::static_partitioner{}).size(), 4 * p.workers()) << "0 chunks: four per worker";
}

// The leaf loops hold a copy of the callable only when copying it is trivial (fork_join.hpp's
// leaf_callable); one whose copy constructor does something, or that cannot be copied, is
// called in place, as before.
TEST(Partitioners, ACallableWithANonTrivialCopyIsCalledInPlaceNeverCopied) {
  pool p(with_workers(2));
  struct counted_copies {
    std::atomic<int>* copies;
    std::atomic<long>* sum;
    counted_copies(std::atomic<int>* c, std::atomic<long>* s) : copies(c), sum(s) {}
    counted_copies(const counted_copies& other) : copies(other.copies), sum(other.sum) { copies->fetch_add(1); }
    counted_copies& operator=(const counted_copies&) = delete;
    void operator()(int i) const { sum->fetch_add(i, std::memory_order_relaxed); }
    void operator()(int i, int j) const { sum->fetch_add(i * 1000 + j, std::memory_order_relaxed); }
    long operator()(long a, long b) const { return a + b; }
  };
  struct not_copyable {
    std::atomic<long>* sum;
    explicit not_copyable(std::atomic<long>* s) : sum(s) {}
    not_copyable(const not_copyable&) = delete;
    void operator()(int i) const { sum->fetch_add(i, std::memory_order_relaxed); }
  };
  for_each_partitioner([&](auto partitioner, const char* name) {
    std::atomic<int> copies{0};
    std::atomic<long> sum{0};
    counted_copies f(&copies, &sum);
    tidepool::parallel_for(p, 0, 1000, f, partitioner);
    EXPECT_EQ(sum.exchange(0), 999L * 1000 / 2) << name;
    tidepool::parallel_for(p, tidepool::blocked_range2d<int>(0, 30, 0, 40), f, partitioner);
    EXPECT_EQ(sum.exchange(0), 40L * 1000 * (29 * 30 / 2) + 30L * (39 * 40 / 2)) << name;
    const long total = tidepool::parallel_reduce(p, 0, 1000, 0L, [](int i) { return long{i}; }, f, partitioner);
    EXPECT_EQ(total, 999L * 1000 / 2) << name;
    EXPECT_EQ(copies.load(), 0) << name;
    not_copyable g(&sum);
    tidepool::parallel_for(p, 0, 1000, g, partitioner);
    EXPECT_EQ(sum.load(), 999L * 1000 / 2) << name;
  });
}

TEST(Partitioners, SimpleSplitsEveryPieceDownToTheGrain) {
  pool p(with_workers(2));
  for (std::size_t grain : {1U, 4U, 10U}) {
    const auto pieces = pieces_of(p, 1000, tidepool::simple_partitioner{grain});
    expect_contiguous_cover(pieces, 1000);
    for (const auto& [from, to] : pieces) {
      EXPECT_LE(to - from, grain);
      EXPECT_GE(to - from, (grain + 1) / 2) << "halving stops as soon as a piece fits the grain";
    }
  }
}

TEST(Partitioners, AutoRunsNoPieceLargerThanTheGrain) {
  pool p(with_workers(2));
  for (std::size_t grain : {1U, 7U, 100U}) {
    const auto pieces = pieces_of(p, 5000, tidepool::auto_partitioner{grain});
    expect_contiguous_cover(pieces, 5000);
    for (const auto& [from, to] : pieces) EXPECT_LE(to - from, grain);
  }
}

// --- blocked_range2d

// Every cell of rows [i0, i1) × columns [j0, j1) is visited exactly once, by both forms of f.
template <class I, class J>
void expect_every_cell_once(pool& p, I i0, I i1, std::size_t i_grain, J j0, J j1, std::size_t j_grain) {
  const auto rows = static_cast<std::size_t>(tidepool::detail::distance(i0, i1));
  const auto cols = static_cast<std::size_t>(tidepool::detail::distance(j0, j1));
  auto cell = [&](I i, J j) {
    return static_cast<std::size_t>(tidepool::detail::distance(i0, i)) * cols + static_cast<std::size_t>(tidepool::detail::distance(j0, j));
  };
  const tidepool::blocked_range2d<I, J> range(i0, i1, i_grain, j0, j1, j_grain);
  for_each_partitioner([&](auto partitioner, const char* name) {
    std::vector<std::atomic<int>> by_tile(rows * cols);
    std::vector<std::atomic<int>> by_cell(rows * cols);
    std::atomic<bool> bad_tile{false};
    tidepool::parallel_for(
        p, range,
        [&](tidepool::index_range<I> tile_rows, tidepool::index_range<J> tile_cols) {
          if (tile_rows.empty() || tile_cols.empty() || tile_rows.first() < i0 || tile_cols.first() < j0) bad_tile.store(true);
          for (I i : tile_rows) {
            for (J j : tile_cols) by_tile[cell(i, j)].fetch_add(1, std::memory_order_relaxed);
          }
        },
        partitioner);
    tidepool::parallel_for(p, range, [&](I i, J j) { by_cell[cell(i, j)].fetch_add(1, std::memory_order_relaxed); }, partitioner);
    EXPECT_FALSE(bad_tile.load()) << name;
    for (std::size_t k = 0; k < rows * cols; ++k) {
      ASSERT_EQ(by_tile[k].load(), 1) << name << " cell " << k << " (tiles)";
      ASSERT_EQ(by_cell[k].load(), 1) << name << " cell " << k << " (cells)";
    }
  });
}

TEST(BlockedRange2d, EveryCellIsVisitedOnceWithEachPartitionerAndBothFormsOfF) {
  pool p(with_workers(2));
  expect_every_cell_once<int, int>(p, 0, 1, 1, 0, 1, 1);
  expect_every_cell_once<int, int>(p, 0, 3, 1, 0, 200, 1);
  expect_every_cell_once<int, int>(p, -50, 77, 4, 10, 61, 8);
  expect_every_cell_once<long long, unsigned>(p, LLONG_MAX - 40, LLONG_MAX, 1, UINT_MAX - 90, UINT_MAX, 1);
  expect_every_cell_once<signed char, unsigned char>(p, SCHAR_MIN, SCHAR_MAX, 1, 0, UCHAR_MAX, 1);
}

TEST(BlockedRange2d, AnEmptyRangeCallsNothing) {
  pool p(with_workers(2));
  std::atomic<int> calls{0};
  tidepool::parallel_for(p, tidepool::blocked_range2d<int>(0, 0, 0, 10), [&](int, int) { calls.fetch_add(1); });
  tidepool::parallel_for(p, tidepool::blocked_range2d<int>(0, 10, 5, 5), [&](int, int) { calls.fetch_add(1); });
  tidepool::parallel_for(p, tidepool::blocked_range2d<int>(3, 1, 0, 10), [&](int, int) { calls.fetch_add(1); });
  EXPECT_EQ(calls.load(), 0);
}

TEST(BlockedRange2d, SimpleSplitsAcrossTheLongerSideDownToTheGrains) {
  pool p(with_workers(2));
  std::atomic<bool> too_small{false};
  std::atomic<bool> too_large{false};
  tidepool::parallel_for(
      p, tidepool::blocked_range2d<int>(0, 64, 4, 0, 256, 16),
      [&](tidepool::index_range<int> rows, tidepool::index_range<int> cols) {
        if (rows.size() < 4 || cols.size() < 16) too_small.store(true);
        if (rows.size() > 4 || cols.size() > 16) too_large.store(true);
      },
      tidepool::simple_partitioner{});
  EXPECT_FALSE(too_small.load()) << "a split left a side shorter than its grain";
  EXPECT_FALSE(too_large.load()) << "simple stops only when no side can be split";
}

TEST(BlockedRange2d, StaticCutsStripsOfWholeRowsWhileThereAreAsManyRowsAsChunks) {
  pool p(with_workers(2));
  for (const auto& [rows, chunks] : {std::pair{64, 8}, std::pair{8, 8}, std::pair{1000, 7}}) {
    std::mutex lock;
    std::vector<std::pair<int, int>> strips;  // [first row, last row)
    std::atomic<bool> cut_columns{false};
    tidepool::parallel_for(
        p, tidepool::blocked_range2d<int>(0, rows, 0, 256),
        [&](tidepool::index_range<int> tile_rows, tidepool::index_range<int> tile_cols) {
          if (tile_cols.first() != 0 || tile_cols.last() != 256) cut_columns.store(true);
          const std::lock_guard hold(lock);
          strips.emplace_back(tile_rows.first(), tile_rows.last());
        },
        tidepool::static_partitioner{static_cast<std::size_t>(chunks)});
    EXPECT_FALSE(cut_columns.load()) << rows << " rows, " << chunks << " chunks";
    ASSERT_EQ(strips.size(), static_cast<std::size_t>(chunks)) << rows << " rows";
    std::sort(strips.begin(), strips.end());
    int next = 0;
    for (const auto& [from, to] : strips) {
      EXPECT_EQ(from, next);
      EXPECT_GE(to - from, rows / chunks);
      EXPECT_LE(to - from, rows / chunks + 1);
      next = to;
    }
    EXPECT_EQ(next, rows);
  }
  // Fewer rows than chunks: the columns are cut too, and every cell is still visited once.
  std::atomic<int> tiles{0};
  tidepool::parallel_for(
      p, tidepool::blocked_range2d<int>(0, 2, 0, 256), [&](tidepool::index_range<int>, tidepool::index_range<int>) { tiles.fetch_add(1); },
      tidepool::static_partitioner{8});
  EXPECT_EQ(tiles.load(), 8);
}

// --- parallel_inclusive_scan / parallel_exclusive_scan

// An associative operation that is not commutative: composing affine maps x → a·x + b (mod 2^32),
// so that any block folded out of order, or a prefix applied on the wrong side, shows.
struct affine {
  std::uint32_t a;
  std::uint32_t b;
  friend bool operator==(const affine&, const affine&) = default;
};
struct then_apply {
  affine operator()(const affine& first, const affine& second) const {
    return {second.a * first.a, second.a * first.b + second.b};
  }
};

std::vector<affine> random_maps(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::vector<affine> maps(n);
  for (auto& m : maps) m = {static_cast<std::uint32_t>(random()) | 1U, static_cast<std::uint32_t>(random())};
  return maps;
}

TEST(Scan, InclusiveAndExclusiveMatchTheSerialScanForEverySizeAndWorkerCount) {
  const affine init{3, 7};
  for (std::size_t workers : {1U, 2U, 3U}) {
    pool p(with_workers(workers));
    for (std::size_t n : {0U, 1U, 5U, 16383U, 16384U, 16385U, 100003U}) {
      const std::vector<affine> in = random_maps(n, n + workers);
      std::vector<affine> expected(n);
      std::vector<affine> got(n);
      std::inclusive_scan(in.begin(), in.end(), expected.begin(), then_apply(), init);
      EXPECT_EQ(tidepool::parallel_inclusive_scan(p, in.begin(), in.end(), got.begin(), then_apply(), init), got.end());
      ASSERT_EQ(got, expected) << "inclusive, n " << n << ", " << workers << " workers";
      std::exclusive_scan(in.begin(), in.end(), expected.begin(), init, then_apply());
      EXPECT_EQ(tidepool::parallel_exclusive_scan(p, in.begin(), in.end(), got.begin(), then_apply(), init), got.end());
      ASSERT_EQ(got, expected) << "exclusive, n " << n << ", " << workers << " workers";
    }
  }
}

// Slow first elements keep the first worker in block 0 long enough that the other worker takes
// the later blocks before their prefix is known: those are summed first and scanned in the
// second pass, the path a scan on an idle machine may never take.
TEST(Scan, BlocksStartedBeforeTheirPrefixIsKnownAreScannedInASecondPass) {
  pool p(with_workers(2));
  std::vector<affine> in = random_maps(100000, 5);
  for (std::size_t k = 0; k < 200; ++k) in[k].a = 3;  // 3 marks a slow element
  auto slow_then_apply = [](const affine& first, const affine& second) {
    if (second.a == 3) std::this_thread::sleep_for(std::chrono::microseconds(100));
    return then_apply()(first, second);
  };
  std::vector<affine> expected(in.size());
  std::vector<affine> got(in.size());
  std::inclusive_scan(in.begin(), in.end(), expected.begin(), then_apply(), affine{1, 0});
  tidepool::parallel_inclusive_scan(p, in.begin(), in.end(), got.begin(), slow_then_apply, affine{1, 0});
  EXPECT_EQ(got, expected);
}

TEST(Scan, InPlaceScansGiveTheSameAnswer) {
  pool p(with_workers(2));
  const std::vector<affine> in = random_maps(200001, 1);
  for (bool inclusive : {true, false}) {
    std::vector<affine> expected(in.size());
    std::vector<affine> data = in;
    if (inclusive) {
      std::inclusive_scan(in.begin(), in.end(), expected.begin(), then_apply(), affine{1, 0});
      tidepool::parallel_inclusive_scan(p, data.begin(), data.end(), data.begin(), then_apply(), affine{1, 0});
    } else {
      std::exclusive_scan(in.begin(), in.end(), expected.begin(), affine{1, 0}, then_apply());
      tidepool::parallel_exclusive_scan(p, data.begin(), data.end(), data.begin(), then_apply(), affine{1, 0});
    }
    EXPECT_EQ(data, expected) << (inclusive ? "inclusive" : "exclusive");
  }
}

TEST(Scan, IteratorsThatAreNotRandomAccessAndThrowingOperationsWork) {
  pool p(with_workers(2));
  const std::list<int> in{1, 2, 3, 4};
  std::list<long> out(4);
  tidepool::parallel_inclusive_scan(p, in.begin(), in.end(), out.begin(), std::plus<>(), 10L);
  EXPECT_EQ(out, (std::list<long>{11, 13, 16, 20}));
  tidepool::parallel_exclusive_scan(p, in.begin(), in.end(), out.begin(), std::plus<>(), 10L);
  EXPECT_EQ(out, (std::list<long>{10, 11, 13, 16}));

  const std::vector<int> many(100000, 1);
  std::vector<int> sums(many.size());
  auto throwing = [](int a, int b) {
    if (a == 50000) throw std::runtime_error("50000");
    return a + b;
  };
  EXPECT_THROW(tidepool::parallel_inclusive_scan(p, many.begin(), many.end(), sums.begin(), throwing, 0), std::runtime_error);
}

// --- parallel_sort

template <class T, class Cmp = std::less<>>
void expect_sorts_like_std_sort(pool& p, std::vector<T> data, const char* what, Cmp cmp = {}) {
  std::vector<T> expected = data;
  std::sort(expected.begin(), expected.end(), cmp);
  tidepool::parallel_sort(p, data.begin(), data.end(), cmp);
  ASSERT_EQ(data, expected) << what << ", n " << data.size() << ", " << p.workers() << " workers";
}

TEST(Sort, RandomEqualSortedAndReversedInputsSortLikeStdSort) {
  std::mt19937_64 random(42);
  for (std::size_t workers : {1U, 2U, 3U, 5U}) {
    pool p(with_workers(workers));
    for (std::size_t n : {0U, 1U, 2U, 100U, 16383U, 16384U, 16385U, 100003U, 1U << 19}) {
      std::vector<std::uint32_t> v(n);
      for (auto& x : v) x = static_cast<std::uint32_t>(random());
      expect_sorts_like_std_sort(p, v, "random");
      expect_sorts_like_std_sort(p, v, "random, descending", std::greater<>());
      for (auto& x : v) x %= 3;
      expect_sorts_like_std_sort(p, v, "three keys");
      std::sort(v.begin(), v.end());
      expect_sorts_like_std_sort(p, v, "sorted");
      std::reverse(v.begin(), v.end());
      expect_sorts_like_std_sort(p, v, "reversed");
    }
  }
}

TEST(Sort, StringsSortLikeStdSort) {
  pool p(with_workers(2));
  std::mt19937_64 random(7);
  std::vector<std::string> v(tidepool::testing::stress_count(200000, 50000));
  for (auto& s : v) s = std::to_string(random() % 1000000) + std::string(random() % 20, 'x');
  expect_sorts_like_std_sort(p, v, "strings");
}

// Strings in their natural order are sorted by an 8-byte prefix key (parallel_sort.hpp); every
// case where the prefix alone cannot decide, or could decide wrongly, is here: long shared
// prefixes, a string that is a prefix of another, embedded and trailing NUL bytes, bytes above
// 127 (char is signed here, the order is by unsigned char), empty strings, duplicates.
TEST(Sort, StringsInTheirNaturalOrderSortLikeStdSortWhateverTheirFirstBytes) {
  std::mt19937_64 random(11);
  const std::string alphabet("ab\0\x7f\x80\xff", 6);
  std::vector<std::string> v(tidepool::testing::stress_count(60000, 20000));
  for (auto& s : v) {
    const std::string shared = random() % 2 == 0 ? "" : std::string(random() % 12, 'p');
    s = shared;
    for (std::size_t k = random() % 11; k > 0; --k) s += alphabet[random() % alphabet.size()];
  }
  for (std::size_t workers : {1U, 2U, 3U}) {
    pool p(with_workers(workers));
    expect_sorts_like_std_sort(p, v, "strings, std::less<>");
    expect_sorts_like_std_sort(p, v, "strings, std::less<std::string>", std::less<std::string>());
    expect_sorts_like_std_sort(p, v, "strings, std::ranges::less", std::ranges::less());
    std::vector<std::string_view> views(v.begin(), v.end());
    expect_sorts_like_std_sort(p, views, "string views");
  }
}

TEST(Sort, MoveOnlyAndNonDefaultConstructibleValuesSort) {
  pool p(with_workers(2));
  std::mt19937_64 random(3);
  std::vector<std::unique_ptr<int>> owned(50000);
  for (auto& o : owned) o = std::make_unique<int>(static_cast<int>(random() % 100000));
  tidepool::parallel_sort(p, owned.begin(), owned.end(), [](const auto& a, const auto& b) { return *a < *b; });
  EXPECT_TRUE(std::is_sorted(owned.begin(), owned.end(), [](const auto& a, const auto& b) { return *a < *b; }));
  for (const auto& o : owned) ASSERT_NE(o, nullptr) << "a value was lost in a merge";

  struct key {
    explicit key(int v) : value(v) {}
    int value;
    bool operator<(const key& other) const { return value < other.value; }
    bool operator==(const key&) const = default;
  };
  std::vector<key> keys;
  for (int i = 0; i < 40000; ++i) keys.emplace_back(static_cast<int>(random() % 1000));
  expect_sorts_like_std_sort(p, keys, "not default constructible");
}

}  // namespace
