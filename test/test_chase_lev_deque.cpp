// The Chase–Lev deque's promises: LIFO for the owner, FIFO for thieves, a bounded ring that says
// "full" instead of growing, every item handed out exactly once under any interleaving, and no
// slot left pointing at an item that has been handed out.

#include "tidepool/detail/chase_lev_deque.hpp"

#include <gtest/gtest.h>

#include <atomic>     // for std::atomic
#include <cstdint>    // for std::uint8_t
#include <cstdio>     // for std::printf
#include <memory>     // for std::make_unique
#include <random>     // for std::minstd_rand
#include <stdexcept>  // for std::invalid_argument
#include <thread>     // for std::thread
#include <vector>     // for std::vector

#include "stress_config.hpp"

namespace {

using tidepool::detail::chase_lev_deque;
using tidepool::detail::steal_status;
using tidepool::testing::stress_count;

TEST(ChaseLevDeque, EmptyDequeHasNothingToPopOrSteal) {
  chase_lev_deque<int> deque(4);
  EXPECT_EQ(deque.pop(), nullptr);
  const auto stolen = deque.steal();
  EXPECT_EQ(stolen.status, steal_status::empty);
  EXPECT_EQ(stolen.item, nullptr);
  EXPECT_EQ(deque.size_estimate(), 0U);
  // Popping an empty deque must leave bottom where it was: a later push and pop still work.
  int x = 1;
  ASSERT_TRUE(deque.push(&x));
  EXPECT_EQ(deque.pop(), &x);
}

TEST(ChaseLevDeque, CapacityMustBeAPowerOfTwo) {
  EXPECT_THROW(chase_lev_deque<int>(0), std::invalid_argument);
  EXPECT_THROW(chase_lev_deque<int>(1), std::invalid_argument);
  EXPECT_THROW(chase_lev_deque<int>(6), std::invalid_argument);
  EXPECT_EQ(chase_lev_deque<int>(8).capacity(), 8U);
  EXPECT_EQ(chase_lev_deque<int>().capacity(), chase_lev_deque<int>::default_capacity);
}

TEST(ChaseLevDeque, OwnerPopsNewestFirstThievesStealOldestFirst) {
  chase_lev_deque<int> deque(8);
  int items[5] = {0, 1, 2, 3, 4};
  for (int& i : items) ASSERT_TRUE(deque.push(&i));
  EXPECT_EQ(deque.size_estimate(), 5U);
  EXPECT_EQ(deque.steal().item, &items[0]);
  EXPECT_EQ(deque.pop(), &items[4]);
  EXPECT_EQ(deque.steal().item, &items[1]);
  EXPECT_EQ(deque.pop(), &items[3]);
  EXPECT_EQ(deque.pop(), &items[2]);
  EXPECT_EQ(deque.pop(), nullptr);
  EXPECT_EQ(deque.steal().status, steal_status::empty);
}

TEST(ChaseLevDeque, FullDequeRefusesPushAndStaysIntact) {
  chase_lev_deque<int> deque(4);
  int items[5] = {};
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(deque.push(&items[i]));
  EXPECT_FALSE(deque.push(&items[4]));
  EXPECT_EQ(deque.size_estimate(), 4U);
  // A steal frees the oldest slot: one more push fits, and nothing was overwritten.
  EXPECT_EQ(deque.steal().item, &items[0]);
  ASSERT_TRUE(deque.push(&items[4]));
  EXPECT_FALSE(deque.push(&items[0]));
  for (int i = 4; i >= 1; --i) EXPECT_EQ(deque.pop(), &items[i]);
  EXPECT_EQ(deque.pop(), nullptr);
}

TEST(ChaseLevDeque, IndicesWrapAroundTheRingForManyLaps) {
  constexpr std::size_t capacity = 4;
  chase_lev_deque<std::size_t> deque(capacity);
  std::vector<std::size_t> values(capacity * 1000);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = i;
  std::size_t next_push = 0;
  std::size_t next_steal = 0;
  // Keep three items in flight, stealing from the front, so top and bottom lap the ring 750 times.
  while (next_push < values.size()) {
    while (deque.size_estimate() < 3 && next_push < values.size()) ASSERT_TRUE(deque.push(&values[next_push++]));
    const auto stolen = deque.steal();
    ASSERT_EQ(stolen.status, steal_status::success);
    ASSERT_EQ(*stolen.item, next_steal++);
  }
  while (auto stolen = deque.steal().item) ASSERT_EQ(*stolen, next_steal++);
  EXPECT_EQ(next_steal, values.size());
}

TEST(ChaseLevDeque, SlotsAreClearedWhenItemsArePoppedOrStolen) {
  chase_lev_deque<int> deque(8);
  int items[6] = {};
  for (int& i : items) ASSERT_TRUE(deque.push(&i));
  EXPECT_EQ(deque.occupied_slots_for_testing(), 6U);
  (void)deque.steal();
  (void)deque.steal();
  EXPECT_EQ(deque.occupied_slots_for_testing(), 4U);
  (void)deque.pop();
  EXPECT_EQ(deque.occupied_slots_for_testing(), 3U);
  while (deque.pop() != nullptr) {
  }
  EXPECT_EQ(deque.occupied_slots_for_testing(), 0U);
}

// One item, raced by the owner's pop and a thief's steal, many times: exactly one of them gets it.
TEST(ChaseLevDeque, LastItemRacedByPopAndStealGoesToExactlyOne) {
  const std::size_t rounds = stress_count(100'000);
  chase_lev_deque<int> deque(2);
  int item = 0;
  std::atomic<std::size_t> round_started{0};
  std::atomic<std::size_t> thief_done{0};
  std::size_t owner_wins = 0;
  std::size_t thief_wins = 0;
  std::size_t thief_lost_races = 0;

  std::thread thief([&] {
    for (std::size_t r = 1; r <= rounds; ++r) {
      // Yield rather than spin: on one CPU (taskset -c 0, or a loaded CI machine) a spinning
      // waiter would burn its whole time slice before the other side could move.
      while (round_started.load(std::memory_order_acquire) < r) std::this_thread::yield();
      steal_status status;
      do {
        status = deque.steal().status;
        thief_lost_races += status == steal_status::lost_race;
      } while (status == steal_status::lost_race);
      thief_wins += status == steal_status::success;
      thief_done.store(r, std::memory_order_release);
    }
  });
  std::minstd_rand rng(7);
  for (std::size_t r = 1; r <= rounds; ++r) {
    ASSERT_TRUE(deque.push(&item));
    round_started.store(r, std::memory_order_release);
    // A random short delay lets the thief arrive before, during or after the pop.
    volatile unsigned sink = 0;
    for (unsigned spin = rng() % 256; spin > 0; --spin) sink = spin;
    (void)sink;
    owner_wins += deque.pop() != nullptr;
    while (thief_done.load(std::memory_order_acquire) < r) std::this_thread::yield();
    ASSERT_EQ(owner_wins + thief_wins, r) << "item lost or duplicated in round " << r;
    ASSERT_EQ(deque.occupied_slots_for_testing(), 0U);
  }
  thief.join();
  EXPECT_EQ(owner_wins + thief_wins, rounds);
  std::printf("last-item race over %zu rounds: owner %zu, thief %zu, thief lost races %zu\n", rounds, owner_wins,
              thief_wins, thief_lost_races);
}

// The owner pushes and pops (randomly interleaved, so the deque is often near empty and often
// full) while three thieves steal: every item is handed out exactly once.
TEST(ChaseLevDeque, StressEveryItemDeliveredExactlyOnceWithThreeThieves) {
  const std::size_t total = stress_count(2'000'000, 20'000);
  constexpr int thieves = 3;
  chase_lev_deque<std::size_t> deque(64);
  std::vector<std::size_t> ids(total);
  for (std::size_t i = 0; i < total; ++i) ids[i] = i;
  auto deliveries = std::make_unique<std::atomic<std::uint8_t>[]>(total);
  std::atomic<std::size_t> delivered{0};
  std::atomic<bool> owner_done{false};

  auto take = [&](std::size_t* item) {
    deliveries[*item].fetch_add(1, std::memory_order_relaxed);
    delivered.fetch_add(1, std::memory_order_relaxed);
  };

  std::vector<std::thread> threads;
  std::atomic<std::size_t> lost_races{0};
  for (int t = 0; t < thieves; ++t) {
    threads.emplace_back([&] {
      std::size_t lost = 0;
      while (!owner_done.load(std::memory_order_acquire) || deque.size_estimate() > 0) {
        const auto stolen = deque.steal();
        if (stolen.status == steal_status::success) take(stolen.item);
        lost += stolen.status == steal_status::lost_race;
        // An empty deque: give the owner the CPU (on one CPU it could not refill it otherwise).
        if (stolen.status == steal_status::empty) std::this_thread::yield();
      }
      lost_races.fetch_add(lost);
    });
  }

  std::minstd_rand rng(42);
  std::size_t next = 0;
  while (next < total) {
    const unsigned burst = rng() % 8;
    for (unsigned i = 0; i < burst && next < total; ++i) {
      if (!deque.push(&ids[next])) break;  // full: pop some instead, as a worker would overflow
      ++next;
    }
    const unsigned pops = rng() % 6;
    for (unsigned i = 0; i < pops; ++i) {
      if (std::size_t* item = deque.pop()) take(item);
    }
  }
  while (std::size_t* item = deque.pop()) take(item);
  owner_done.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();

  EXPECT_EQ(delivered.load(), total);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < total; ++i) wrong += deliveries[i].load() != 1;
  EXPECT_EQ(wrong, 0U) << "items delivered zero or several times";
  EXPECT_EQ(deque.occupied_slots_for_testing(), 0U);
  std::printf("%zu items, thieves lost %zu races\n", total, lost_races.load());
}

}  // namespace
