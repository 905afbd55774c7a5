// Who wakes a parked worker (detail/parking_handshake.hpp, waker_kind): a submission from outside
// the pool wakes one more sleeper for each task it publishes while every searcher is a worker
// still in transit (woken, not yet running); one task wakes one worker. Each woken worker is held
// at the library's hook point (lib/test_hooks.hpp; built only with -Dtest_hooks=true) right
// after its wake-up, so it stays in transit until the test lets it go: the counts below do not
// depend on timing.

#include <gtest/gtest.h>

#include <atomic>   // for std::atomic
#include <chrono>   // for std::chrono
#include <cstddef>  // for std::size_t
#include <thread>   // for std::this_thread

#include "pool_options_for_tests.hpp"
#include "test_hooks.hpp"
#include "tidepool/tidepool.hpp"

namespace {

using namespace std::chrono_literals;
using tidepool::pool;
using tidepool::testing::with_workers;
namespace hooks = tidepool::detail::test_hooks;

std::atomic<std::size_t> woken{0};
std::atomic<bool> released{false};

void hold_woken_workers(hooks::point p) {
  if (p != hooks::point::after_wake_up) return;
  woken.fetch_add(1);
  while (!released.load()) std::this_thread::sleep_for(100us);
}

struct holding_woken_workers {
  holding_woken_workers() {
    woken.store(0);
    released.store(false);
    hooks::installed.store(&hold_woken_workers);
  }
  ~holding_woken_workers() {
    released.store(true);
    hooks::installed.store(nullptr);
  }
};

// Polls `done` for up to 10 s (a slow sanitizer build takes a while to park its workers).
template <class Done>
bool eventually(Done&& done) {
  for (int i = 0; i < 10'000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return done();
}

// Both workers parked: nothing was submitted, so nothing wakes them before the test does.
void wait_until_parked(pool& p, std::size_t workers) {
  ASSERT_TRUE(eventually([&] { return p.metrics().parks >= workers; }));
}

TEST(WakeUpPolicy, EachOutsideTaskWakesAWorkerWhileTheWokenOnesAreInTransit) {
  const holding_woken_workers holding;
  pool p(with_workers(2));
  wait_until_parked(p, 2);
  std::atomic<int> ran{0};
  // The first wakes one worker, which the hook holds in transit. It counts as a searcher, yet
  // it is not looking: the second task wakes the other worker.
  p.go([&ran] { ran.fetch_add(1); });
  p.go([&ran] { ran.fetch_add(1); });
  EXPECT_TRUE(eventually([] { return woken.load() == 2; })) << "woken: " << woken.load();
  released.store(true);
  EXPECT_TRUE(eventually([&] { return ran.load() == 2; }));
  p.stop_and_wait();
  EXPECT_EQ(p.metrics().wakeups, 2u);
}

TEST(WakeUpPolicy, OneOutsideTaskWakesOneWorker) {
  const holding_woken_workers holding;
  pool p(with_workers(2));
  wait_until_parked(p, 2);
  std::atomic<int> ran{0};
  p.go([&ran] { ran.fetch_add(1); });
  ASSERT_TRUE(eventually([] { return woken.load() == 1; }));
  // The woken worker is held before it could pass anything on; nothing else wakes the other.
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(woken.load(), 1u);
  released.store(true);
  EXPECT_TRUE(eventually([&] { return ran.load() == 1; }));
  // It found the one task and nothing more: it wakes nobody either.
  p.stop_and_wait();
  EXPECT_EQ(p.metrics().wakeups, 1u);
  EXPECT_EQ(woken.load(), 1u);
}

}  // namespace
