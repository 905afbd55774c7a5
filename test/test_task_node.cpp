// Task nodes come in three sizes (48, 64, 128 bytes) with the callable, then its result or
// exception, in the same storage. Each test's name states the promise it checks, for callables
// and results of every size class, the heap fallback included.

#include <gtest/gtest.h>

#include <array>      // for std::array
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono::steady_clock, std::chrono::seconds
#include <cstddef>    // for std::size_t
#include <cstdint>    // for std::uint64_t
#include <latch>      // for std::latch
#include <stop_token> // for std::stop_token
#include <stdexcept>  // for std::runtime_error
#include <string>     // for std::string
#include <thread>     // for std::thread, std::this_thread::yield
#include <vector>     // for std::vector

#include "pool_options_for_tests.hpp"
#include "stress_config.hpp"
#include "tidepool/tidepool.hpp"

namespace {

using tidepool::pool;
using tidepool::testing::stress_count;
using tidepool::testing::with_workers;
using tidepool::detail::node_size;
using tidepool::detail::node_size_for;

std::atomic<int> alive{0};

// A capture of exactly Bytes bytes that counts its live copies and checks its contents.
template <std::size_t Bytes>
struct capture {
  static_assert(Bytes >= sizeof(int));
  std::array<unsigned char, Bytes - sizeof(int)> fill;
  int tag;
  explicit capture(int t) : tag(t) {
    fill.fill(static_cast<unsigned char>(t));
    alive.fetch_add(1);
  }
  capture(const capture& other) : fill(other.fill), tag(other.tag) { alive.fetch_add(1); }
  capture(capture&& other) noexcept : fill(other.fill), tag(other.tag) { alive.fetch_add(1); }
  capture& operator=(const capture&) = delete;
  ~capture() { alive.fetch_sub(1); }
  [[nodiscard]] bool intact() const {
    for (unsigned char c : fill) {
      if (c != static_cast<unsigned char>(tag)) return false;
    }
    return true;
  }
};

struct alignas(32) over_aligned {
  double value = 0;
};

// Which node each kind of callable gets. A lambda with captures of N bytes is N bytes.
static_assert(node_size_for<decltype([] {}), void> == node_size::tiny);
static_assert(node_size_for<capture<16>, void> == node_size::tiny);  // 16 + the 8-byte time stamp
static_assert(node_size_for<capture<24>, void> == node_size::small);
static_assert(node_size_for<capture<32>, void> == node_size::small);
static_assert(node_size_for<capture<33>, void> == node_size::large);
static_assert(node_size_for<capture<96>, void> == node_size::large);
static_assert(node_size_for<capture<97>, void> == node_size::tiny);  // on the heap, a pointer inline
static_assert(node_size_for<over_aligned, void> == node_size::tiny);  // on the heap too
// The result shares the storage: the node is the larger of the two needs.
static_assert(node_size_for<capture<8>, std::array<char, 30>> == node_size::small);
static_assert(node_size_for<capture<8>, std::array<char, 90>> == node_size::large);
static_assert(node_size_for<capture<8>, std::array<char, 500>> == node_size::tiny);  // result on the heap
static_assert(node_size_for<capture<90>, int> == node_size::large);

// What go() and submit() build (detail/submitter.hpp): options live beside the node, never in it.
TEST(TaskNode, APlainGoOfASmallLambdaStillGetsThe48ByteNodeAndOptionsDoNotEnlargeIt) {
  using tidepool::detail::make_task_node;
  using tidepool::detail::task_kind;
  int a = 0;
  int b = 0;
  auto small = [&a, &b] { a += b; };  // 16 bytes of captures
  using small_fn = decltype(small);
  tidepool::detail::task_node* plain = make_task_node<small_fn, void>(small, task_kind::fire_and_forget);
  EXPECT_EQ(tidepool::detail::node_bytes(plain->size_class()), 48u);
  EXPECT_FALSE(plain->has_extras());
  EXPECT_EQ(plain->priority(), tidepool::priority::normal);
  tidepool::detail::discard_task_node(plain);

  tidepool::submit_options options;
  options.priority = tidepool::priority::high;
  options.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  tidepool::detail::task_node* with_options = make_task_node<small_fn, void>(small, task_kind::fire_and_forget, &options);
  EXPECT_EQ(tidepool::detail::node_bytes(with_options->size_class()), 48u);
  EXPECT_TRUE(with_options->has_extras());
  EXPECT_EQ(with_options->priority(), tidepool::priority::high);
  EXPECT_EQ(with_options->extras()->deadline, *options.deadline);
  tidepool::detail::discard_task_node(with_options);

  // A callable taking a token gets a stop source only if something can stop it: a handle can.
  auto takes_token = [&a](std::stop_token) { ++a; };
  using token_fn = decltype(takes_token);
  tidepool::detail::task_node* unstoppable = make_task_node<token_fn, void>(takes_token, task_kind::fire_and_forget);
  EXPECT_FALSE(unstoppable->has_extras());
  tidepool::detail::discard_task_node(unstoppable);
  tidepool::detail::task_node* with_handle = make_task_node<token_fn, void>(takes_token, task_kind::with_handle);
  EXPECT_EQ(tidepool::detail::node_bytes(with_handle->size_class()), 48u);
  EXPECT_TRUE(with_handle->has_extras());
  EXPECT_TRUE(with_handle->extras()->own.stop_possible());
  tidepool::detail::discard_task_node(with_handle);
}

// Runs a task capturing Bytes bytes and returning a value of ResultBytes bytes, and checks the
// capture was intact when it ran, dead before get() returned, and the result arrived whole.
template <std::size_t Bytes, std::size_t ResultBytes>
void round_trip(pool& p, int tag) {
  const int before = alive.load();
  auto t = p.submit([c = capture<Bytes>(tag)] {
    if (!c.intact()) throw std::runtime_error("capture damaged");
    std::array<unsigned char, ResultBytes> result;
    result.fill(static_cast<unsigned char>(c.tag + 1));
    return result;
  });
  const auto result = t.get();
  EXPECT_EQ(alive.load(), before) << "a capture outlived its task";
  for (unsigned char c : result) ASSERT_EQ(c, static_cast<unsigned char>(tag + 1));
}

TEST(TaskNode, CallablesAndResultsOfEverySizeArriveWholeAndCapturesDieBeforeGetReturns) {
  pool p(with_workers(2));
  round_trip<4, 1>(p, 1);
  round_trip<16, 16>(p, 2);
  round_trip<24, 8>(p, 3);
  round_trip<32, 40>(p, 4);
  round_trip<48, 96>(p, 5);
  round_trip<96, 4>(p, 6);
  round_trip<200, 8>(p, 7);
  round_trip<8, 500>(p, 8);
  round_trip<300, 300>(p, 9);
  EXPECT_EQ(alive.load(), 0);
}

TEST(TaskNode, AnExceptionThrownByATaskInAnyNodeSizeReachesGet) {
  pool p(with_workers(2));
  const auto check = [&](auto&& f) {
    auto t = p.submit(std::forward<decltype(f)>(f));
    try {
      t.get();
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "thrown");
    }
  };
  check([c = capture<8>(1)]() -> int { throw std::runtime_error("thrown"); });
  check([c = capture<30>(2)]() -> std::array<char, 30> { throw std::runtime_error("thrown"); });
  check([c = capture<90>(3)]() -> std::string { throw std::runtime_error("thrown"); });
  check([c = capture<150>(4)]() { throw std::runtime_error("thrown"); });
  EXPECT_EQ(alive.load(), 0);
}

TEST(TaskNode, SkippedTasksOfEverySizeDestroyTheirCapturesAndReportCancelled) {
  pool p(with_workers(1));
  std::latch release(1);
  p.go([&] { release.wait(); });  // holds the only worker while the group is stopped
  tidepool::task_group g(p);
  auto a = g.submit([c = capture<8>(1)] { return 1; });
  auto b = g.submit([c = capture<30>(2)] { return std::string(40, 'x'); });
  auto c = g.submit([c = capture<90>(3)] { return 3; });
  auto d = g.submit([c = capture<120>(4)] { return 4; });
  g.stop();
  release.count_down();
  EXPECT_THROW(a.get(), tidepool::task_cancelled);
  EXPECT_THROW(b.get(), tidepool::task_cancelled);
  EXPECT_THROW(c.get(), tidepool::task_cancelled);
  EXPECT_THROW(d.get(), tidepool::task_cancelled);
  g.wait();
  EXPECT_EQ(alive.load(), 0);
}

// The node, and the result in it, goes when both the handle and the worker have let go of it;
// the worker lets go just after publishing the outcome, so it may be the last.
TEST(TaskNode, ResultsNobodyTakesAreDestroyedOnceTheHandleAndTheWorkerLetGo) {
  pool p(with_workers(2));
  {
    auto small = p.submit([] { return capture<16>(5); });
    auto large = p.submit([] { return capture<80>(6); });
    auto heap = p.submit([] { return capture<400>(7); });
    small.wait();
    large.wait();
    heap.wait();
    EXPECT_EQ(alive.load(), 3);  // the three results, held by their nodes
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (alive.load() != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(alive.load(), 0) << "a result outlived both its handle and its worker";
}

// The allocator's blocks and caches under load: many threads submitting tasks of all three
// sizes, far more than the caches and the depot hold, every task run exactly once.
TEST(TaskNode, TasksOfAllSizesFromManyThreadsRunExactlyOnce) {
  constexpr int producers = 4;
  const int per_producer = static_cast<int>(stress_count(50'000));
  pool p(with_workers(2));
  std::vector<std::atomic<std::uint64_t>> runs(static_cast<std::size_t>(producers * per_producer));
  std::vector<std::thread> threads;
  for (int t = 0; t < producers; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < per_producer; ++i) {
        const auto index = static_cast<std::size_t>(t * per_producer + i);
        switch (i % 3) {
          case 0: p.go([&runs, index] { runs[index].fetch_add(1); }); break;
          case 1: p.go([&runs, index, c = capture<24>(1)] { runs[index].fetch_add(c.intact() ? 1 : 100); }); break;
          default: p.go([&runs, index, c = capture<80>(2)] { runs[index].fetch_add(c.intact() ? 1 : 100); }); break;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  p.stop_and_wait();
  for (std::size_t i = 0; i < runs.size(); ++i) ASSERT_EQ(runs[i].load(), 1U) << "task " << i;
  EXPECT_EQ(alive.load(), 0);
}

}  // namespace
