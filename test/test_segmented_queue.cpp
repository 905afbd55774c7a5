// The global queue's promises: FIFO (per producer under concurrency), every item delivered
// exactly once, a dequeued item is never referenced by the queue again, a drained queue shrinks
// back to one segment, an empty queue can be polled without allocating, and retired segments stay
// within the hazard-pointer bound.

#include "tidepool/detail/segmented_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>  // for std::max
#include <atomic>     // for std::atomic
#include <cstdint>    // for std::uint8_t, std::uint64_t
#include <cstdio>     // for std::printf
#include <memory>     // for std::make_unique
#include <thread>     // for std::thread
#include <vector>     // for std::vector

#include "stress_config.hpp"

namespace {

using tidepool::testing::stress_count;

template <std::size_t SegmentSize>
using queue_of_ints = tidepool::detail::segmented_queue<int, SegmentSize>;

TEST(SegmentedQueue, EmptyQueueReturnsNullWithoutAllocatingOrSpoilingSlots) {
  queue_of_ints<8> queue;
  for (int i = 0; i < 10'000; ++i) ASSERT_EQ(queue.try_dequeue(), nullptr);
  EXPECT_TRUE(queue.empty_estimate());
  EXPECT_EQ(queue.segments_allocated(), 1U);
  // Polling consumed no tickets: a whole segment's worth of items still fits in the first one.
  int items[8] = {};
  for (int& i : items) queue.enqueue(&i);
  EXPECT_EQ(queue.segments_allocated(), 1U);
  for (int& i : items) EXPECT_EQ(queue.try_dequeue(), &i);
}

TEST(SegmentedQueue, SingleThreadIsFifoAcrossManySegments) {
  queue_of_ints<4> queue;
  std::vector<int> values(1000);
  for (int& v : values) queue.enqueue(&v);
  EXPECT_FALSE(queue.empty_estimate());
  EXPECT_GE(queue.segments_allocated(), values.size() / 4);
  for (int& v : values) ASSERT_EQ(queue.try_dequeue(), &v);
  EXPECT_EQ(queue.try_dequeue(), nullptr);
  EXPECT_TRUE(queue.empty_estimate());
}

TEST(SegmentedQueue, InterleavedEnqueueAndDequeueKeepOrder) {
  queue_of_ints<4> queue;
  std::vector<int> values(101);
  std::size_t in = 0;
  std::size_t out = 0;
  while (out < values.size()) {
    for (int k = 0; k < 3 && in < values.size(); ++k) queue.enqueue(&values[in++]);
    ASSERT_EQ(queue.try_dequeue(), &values[out++]);
  }
  EXPECT_EQ(queue.try_dequeue(), nullptr);
}

TEST(SegmentedQueue, BulkDequeueKeepsOrderAndStopsAtSegmentEnds) {
  queue_of_ints<8> queue;
  int* out[5] = {};
  EXPECT_EQ(queue.try_dequeue_bulk(out, 5), 0U) << "empty";
  std::vector<int> values(20);
  for (int& v : values) queue.enqueue(&v);
  std::size_t next = 0;
  while (next < values.size()) {
    const std::size_t n = queue.try_dequeue_bulk(out, 5);
    ASSERT_GT(n, 0U);
    ASSERT_LE(n, 5U);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], &values[next++]);
  }
  EXPECT_EQ(queue.try_dequeue_bulk(out, 5), 0U);
  EXPECT_EQ(queue.referenced_items_for_testing(), 0U);
}

TEST(SegmentedQueue, DequeuedItemsAreNoLongerReferenced) {
  queue_of_ints<16> queue;
  std::vector<int> values(100);
  for (int& v : values) queue.enqueue(&v);
  EXPECT_EQ(queue.referenced_items_for_testing(), 100U);
  for (int i = 0; i < 37; ++i) ASSERT_NE(queue.try_dequeue(), nullptr);
  EXPECT_EQ(queue.referenced_items_for_testing(), 63U);
  while (queue.try_dequeue() != nullptr) {
  }
  EXPECT_EQ(queue.referenced_items_for_testing(), 0U);
}

TEST(SegmentedQueue, DrainedQueueShrinksBackToOneSegment) {
  queue_of_ints<8> queue;
  std::vector<int> values(8 * 50);
  for (int round = 0; round < 3; ++round) {
    for (int& v : values) queue.enqueue(&v);
    EXPECT_GE(queue.segments_allocated(), 50U);
    while (queue.try_dequeue() != nullptr) {
    }
    // Used-up segments were retired; those not yet reclaimed are within the bound, and a scan
    // with nothing protected frees them all.
    EXPECT_LE(queue.reclamation_domain().unreclaimed(), queue.reclamation_domain().unreclaimed_bound());
    queue.reclamation_domain().reclaim_unprotected();
    EXPECT_EQ(queue.segments_allocated(), 1U) << "round " << round;
  }
}

// Items carry (producer, sequence). Every item arrives exactly once, and each consumer sees each
// producer's items in increasing order.
template <std::size_t SegmentSize>
void stress_exactly_once_and_fifo(int producers, int consumers, std::size_t per_producer) {
  struct item {
    int producer;
    std::size_t sequence;
  };
  tidepool::detail::segmented_queue<item, SegmentSize> queue;
  const std::size_t total = per_producer * static_cast<std::size_t>(producers);
  std::vector<item> items(total);
  for (int p = 0; p < producers; ++p) {
    for (std::size_t s = 0; s < per_producer; ++s) items[static_cast<std::size_t>(p) * per_producer + s] = {p, s};
  }
  auto deliveries = std::make_unique<std::atomic<std::uint8_t>[]>(total);
  std::atomic<std::size_t> consumed{0};
  std::atomic<std::size_t> order_violations{0};
  std::atomic<std::size_t> peak_unreclaimed{0};
  std::atomic<std::size_t> bound_violations{0};

  std::vector<std::thread> threads;
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      std::vector<std::size_t> next_expected(static_cast<std::size_t>(producers), 0);
      std::size_t violations = 0;
      std::size_t peak = 0;
      item* batch[7];
      bool bulk = false;
      while (consumed.load(std::memory_order_relaxed) < total) {
        // Alternate single and bulk dequeues, so both race with each other and with producers.
        bulk = !bulk;
        std::size_t n = 0;
        if (bulk) {
          n = queue.try_dequeue_bulk(batch, 7);
        } else if ((batch[0] = queue.try_dequeue()) != nullptr) {
          n = 1;
        }
        for (std::size_t b = 0; b < n; ++b) {
          item* it = batch[b];
          auto& expected = next_expected[static_cast<std::size_t>(it->producer)];
          violations += it->sequence < expected;
          expected = it->sequence + 1;
          deliveries[static_cast<std::size_t>(it->producer) * per_producer + it->sequence].fetch_add(1);
        }
        if (n == 0) continue;
        consumed.fetch_add(n, std::memory_order_relaxed);
        const std::size_t unreclaimed = queue.reclamation_domain().unreclaimed();
        peak = std::max(peak, unreclaimed);
        if (unreclaimed > queue.reclamation_domain().unreclaimed_bound()) bound_violations.fetch_add(1);
      }
      order_violations.fetch_add(violations);
      std::size_t seen = peak_unreclaimed.load();
      while (peak > seen && !peak_unreclaimed.compare_exchange_weak(seen, peak)) {
      }
    });
  }
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (std::size_t s = 0; s < per_producer; ++s) queue.enqueue(&items[static_cast<std::size_t>(p) * per_producer + s]);
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(consumed.load(), total);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < total; ++i) wrong += deliveries[i].load() != 1;
  EXPECT_EQ(wrong, 0U) << "items delivered zero or several times";
  EXPECT_EQ(order_violations.load(), 0U) << "a consumer saw a producer's items out of order";
  EXPECT_EQ(bound_violations.load(), 0U) << "retired segments exceeded the hazard-pointer bound";
  EXPECT_EQ(queue.try_dequeue(), nullptr);
  EXPECT_EQ(queue.referenced_items_for_testing(), 0U);
  queue.reclamation_domain().reclaim_unprotected();  // adopts the exited threads' retired lists
  EXPECT_EQ(queue.segments_allocated(), 1U);
  std::printf("%dP%dC %zu items, segment %zu: peak unreclaimed segments %zu, bound %zu\n", producers, consumers,
              total, SegmentSize, peak_unreclaimed.load(), queue.reclamation_domain().unreclaimed_bound());
}

TEST(SegmentedQueue, StressFourProducersFourConsumersExactlyOnceAndFifoPerProducer) {
  stress_exactly_once_and_fifo<256>(4, 4, stress_count(500'000, 10'000));
}

// Tiny segments make segment turnover (linking, helping tail, retiring) the common case.
TEST(SegmentedQueue, StressWithTinySegmentsExactlyOnceAndFifoPerProducer) {
  stress_exactly_once_and_fifo<2>(4, 4, stress_count(200'000, 5'000));
}

TEST(SegmentedQueue, StressOneProducerManyConsumers) { stress_exactly_once_and_fifo<16>(1, 4, stress_count(1'000'000, 20'000)); }

TEST(SegmentedQueue, StressManyProducersOneConsumer) { stress_exactly_once_and_fifo<16>(4, 1, stress_count(250'000, 5'000)); }

}  // namespace
