// tidepool::default_pool() and the free submit / go on it (pond's package-level functions).

#include "tidepool/default_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>  // for std::atomic
#include <thread>  // for std::thread

namespace {

TEST(DefaultPool, IsOnePoolWithHardwareConcurrencyWorkers) {
  EXPECT_EQ(&tidepool::default_pool(), &tidepool::default_pool());
  EXPECT_EQ(tidepool::default_pool().workers(), std::max(1U, std::thread::hardware_concurrency()));
}

TEST(DefaultPool, FreeSubmitAndGoRunOnIt) {
  const auto before = tidepool::default_pool().metrics().submitted;
  EXPECT_EQ(tidepool::submit([] { return 40 + 2; }).get(), 42);
  std::atomic<bool> ran{false};
  tidepool::go([&] { ran.store(true); });
  while (!ran.load()) std::this_thread::yield();
  EXPECT_EQ(tidepool::default_pool().metrics().submitted, before + 2);
}

// Used from a static destructor, after main returned: still works (it is never destroyed).
struct uses_the_default_pool_at_exit {
  ~uses_the_default_pool_at_exit() {
    if (tidepool::submit([] { return 7; }).get() != 7) std::abort();
  }
} at_exit;

}  // namespace
