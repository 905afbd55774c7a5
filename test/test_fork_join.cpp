// Fork-join: parallel_invoke, parallel_for and parallel_reduce give the serial answer, propagate
// exceptions, work from inside tasks (helping) and from outside the pool, and never deadlock.

#include "tidepool/fork_join.hpp"

#include <gtest/gtest.h>

#include <atomic>      // for std::atomic
#include <cstdint>     // for std::int64_t
#include <functional>  // for std::plus
#include <numeric>     // for std::accumulate
#include <stdexcept>   // for std::runtime_error
#include <string>      // for std::string
#include <vector>      // for std::vector

#include "pool_options_for_tests.hpp"
#include "stress_config.hpp"
#include "tidepool/pool.hpp"

namespace {

using tidepool::pool;
using tidepool::pool_options;

using tidepool::testing::with_workers;

long fib(pool& p, int n) {
  if (n < 2) return n;
  long a = 0;
  long b = 0;
  tidepool::parallel_invoke(p, [&] { a = fib(p, n - 1); }, [&] { b = fib(p, n - 2); });
  return a + b;
}

TEST(ForkJoin, ParallelInvokeComputesFibOnOneAndTwoWorkers) {
  const int n = tidepool::testing::stress_scale() < 1 ? 20 : 27;
  const long expected = n == 20 ? 6765 : 196418;
  for (std::size_t workers : {1U, 2U}) {
    pool p(with_workers(workers));
    EXPECT_EQ(p.submit([&] { return fib(p, n); }).get(), expected) << workers << " workers";
    EXPECT_EQ(fib(p, 15), 610) << "called from outside the pool";
  }
}

TEST(ForkJoin, ParallelInvokeRunsEveryFunctionOfAVariadicCall) {
  pool p(with_workers(2));
  std::atomic<int> mask{0};
  tidepool::parallel_invoke(
      p, [&] { mask.fetch_or(1); }, [&] { mask.fetch_or(2); }, [&] { mask.fetch_or(4); }, [&] { mask.fetch_or(8); });
  EXPECT_EQ(mask.load(), 15);
}

TEST(ForkJoin, ParallelInvokeRethrowsTheFirstArgumentsExceptionAfterBothFinish) {
  pool p(with_workers(2));
  std::atomic<bool> second_ran{false};
  auto run = [&] {
    tidepool::parallel_invoke(
        p, [] { throw std::runtime_error("first"); },
        [&] {
          second_ran.store(true);
          throw std::logic_error("second");
        });
  };
  EXPECT_THROW(p.submit(run).get(), std::runtime_error);
  EXPECT_TRUE(second_ran.load());
  EXPECT_THROW(tidepool::parallel_invoke(p, [] {}, [] { throw std::logic_error("only"); }), std::logic_error);
}

TEST(ForkJoin, ParallelForMatchesSerialOverManySizesAndGrains) {
  pool p(with_workers(2));
  for (int n : {0, 1, 2, 3, 7, 64, 1000, 12345}) {
    for (std::size_t grain : {0U, 1U, 3U, 100U, 100000U}) {
      std::vector<int> out(static_cast<std::size_t>(n), -1);
      tidepool::parallel_for(p, 0, n, [&](int i) { out[static_cast<std::size_t>(i)] = i * 2; }, grain);
      for (int i = 0; i < n; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], i * 2) << "n " << n << " grain " << grain;
    }
  }
}

TEST(ForkJoin, ParallelForFromInsideATaskHelpsInsteadOfBlocking) {
  pool p(with_workers(1));
  std::vector<std::atomic<int>> hits(10'000);
  p.submit([&] {
     tidepool::parallel_for(p, std::size_t{0}, hits.size(), [&](std::size_t i) { hits[i].fetch_add(1); }, 16);
   }).get();
  for (const auto& h : hits) ASSERT_EQ(h.load(), 1);
}

TEST(ForkJoin, ParallelForPropagatesExceptions) {
  pool p(with_workers(2));
  EXPECT_THROW(tidepool::parallel_for(p, 0, 1000,
                                      [](int i) {
                                        if (i == 777) throw std::runtime_error("bad index");
                                      },
                                      8),
               std::runtime_error);
}

TEST(ForkJoin, ParallelReduceMatchesSerialOverManySizesAndGrains) {
  pool p(with_workers(2));
  for (std::int64_t n : {0, 1, 5, 100, 4097, 100000}) {
    for (std::size_t grain : {0U, 1U, 10U, 1000U}) {
      const std::int64_t sum = tidepool::parallel_reduce(
          p, std::int64_t{0}, n, std::int64_t{7}, [](std::int64_t i) { return i * i; }, std::plus<>(), grain);
      std::int64_t expected = 7;
      for (std::int64_t i = 0; i < n; ++i) expected += i * i;
      ASSERT_EQ(sum, expected) << "n " << n << " grain " << grain;
    }
  }
}

TEST(ForkJoin, ParallelReduceKeepsIndexOrderForNonCommutativeCombine) {
  pool p(with_workers(2));
  const std::string joined = tidepool::parallel_reduce(
      p, 0, 26, std::string(">"), [](int i) { return std::string(1, static_cast<char>('a' + i)); },
      [](std::string a, const std::string& b) { return a + b; }, 1);
  EXPECT_EQ(joined, ">abcdefghijklmnopqrstuvwxyz");
}

TEST(ForkJoin, ParallelReducePropagatesExceptions) {
  pool p(with_workers(2));
  auto bad = [&] {
    return tidepool::parallel_reduce(
        p, 0, 10'000, 0L,
        [](int i) -> long {
          if (i == 9'999) throw std::out_of_range("last");
          return i;
        },
        std::plus<>(), 4);
  };
  EXPECT_THROW(bad(), std::out_of_range);
  EXPECT_THROW(p.submit(bad).get(), std::out_of_range);
}

}  // namespace
