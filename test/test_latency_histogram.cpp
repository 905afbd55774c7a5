// Latency histograms: the bucket arithmetic and percentiles, and what a pool records in them
// (queue wait and run time of sampled tasks, subpool tasks included, nothing when off).

#include "tidepool/latency_histogram.hpp"

#include <gtest/gtest.h>

#include <atomic>   // for std::atomic
#include <chrono>   // for std::chrono
#include <cstdint>  // for std::uint64_t, UINT64_MAX
#include <thread>   // for std::this_thread::sleep_for
#include <vector>   // for std::vector

#include "pool_options_for_tests.hpp"
#include "tidepool/tidepool.hpp"

namespace {

using namespace std::chrono_literals;
using tidepool::latency_histogram;
using tidepool::testing::with_workers;

std::uint64_t sum_of_buckets(const latency_histogram& h) {
  std::uint64_t sum = 0;
  for (std::uint64_t b : h.buckets) sum += b;
  return sum;
}

TEST(LatencyHistogram, BucketsArePowersOfTwoNanosecondsWithInclusiveUpperBounds) {
  EXPECT_EQ(latency_histogram::bucket_of(0), 0U);
  EXPECT_EQ(latency_histogram::bucket_of(128), 0U);
  EXPECT_EQ(latency_histogram::bucket_of(129), 1U);
  EXPECT_EQ(latency_histogram::bucket_of(256), 1U);
  EXPECT_EQ(latency_histogram::bucket_of(257), 2U);
  EXPECT_EQ(latency_histogram::upper_bound_ns(0), 128U);
  EXPECT_EQ(latency_histogram::upper_bound_ns(1), 256U);
  const std::size_t last = latency_histogram::bucket_count - 1;
  EXPECT_EQ(latency_histogram::upper_bound_ns(last), UINT64_MAX);
  EXPECT_EQ(latency_histogram::bucket_of(latency_histogram::upper_bound_ns(last - 1)), last - 1);
  EXPECT_EQ(latency_histogram::bucket_of(latency_histogram::upper_bound_ns(last - 1) + 1), last);
  EXPECT_EQ(latency_histogram::bucket_of(UINT64_MAX), last);
  for (std::size_t i = 0; i + 1 < latency_histogram::bucket_count; ++i) {
    EXPECT_EQ(latency_histogram::bucket_of(latency_histogram::upper_bound_ns(i)), i);
  }
}

TEST(LatencyHistogram, PercentilesFallInTheRightBucketAndNeverExceedTheMaximum) {
  latency_histogram h;
  EXPECT_EQ(h.p50_ns(), 0U);
  for (int i = 0; i < 99; ++i) h.record(1'000);
  h.record(1'000'000);
  EXPECT_EQ(h.count, 100U);
  EXPECT_EQ(sum_of_buckets(h), 100U);
  EXPECT_EQ(h.sum_ns, 99'000U + 1'000'000U);
  EXPECT_EQ(h.max_ns, 1'000'000U);
  for (double q : {0.5, 0.9, 0.99}) {
    const std::uint64_t p = h.percentile_ns(q);
    EXPECT_GT(p, 512U) << q;
    EXPECT_LE(p, 1'024U) << q;
  }
  EXPECT_EQ(h.percentile_ns(1.0), 1'000'000U);
  EXPECT_LE(h.percentile_ns(0.995), 1'000'000U);
  EXPECT_GT(h.percentile_ns(0.995), 524'288U);

  latency_histogram only_one;
  only_one.record(300);
  EXPECT_EQ(only_one.p99_ns(), 300U) << "clamped to the exact maximum";

  latency_histogram merged = h;
  merged += only_one;
  EXPECT_EQ(merged.count, 101U);
  EXPECT_EQ(sum_of_buckets(merged), 101U);
  EXPECT_EQ(merged.max_ns, 1'000'000U);
}

TEST(LatencyHistogram, PoolRecordsQueueWaitAndRunTimeOfEveryTaskWhenAskedTo) {
  tidepool::pool_options o = with_workers(1);
  o.latency_sample_every = 1;
  tidepool::pool p(o);
  constexpr int tasks = 10;
  // The first task holds the only worker until every task is queued, so the last one surely
  // waits for the nine before it, however slowly this thread submits.
  std::atomic<bool> all_queued{false};
  std::vector<tidepool::task<void>> handles;
  handles.push_back(p.submit([&] {
    while (!all_queued.load()) std::this_thread::sleep_for(100us);
    std::this_thread::sleep_for(2ms);
  }));
  for (int i = 1; i < tasks; ++i) handles.push_back(p.submit([] { std::this_thread::sleep_for(2ms); }));
  all_queued.store(true);
  for (auto& h : handles) h.get();
  const tidepool::pool_metrics m = p.metrics();
  EXPECT_EQ(m.latency_sample_every, 1U);
  EXPECT_EQ(m.run_time.count, static_cast<std::uint64_t>(tasks));
  EXPECT_EQ(m.queue_wait.count, static_cast<std::uint64_t>(tasks));
  EXPECT_EQ(sum_of_buckets(m.run_time), m.run_time.count);
  // Each task slept at least 2 ms; one worker ran them one after another, so the last one
  // waited at least 9 × 2 ms.
  EXPECT_GE(m.run_time.max_ns, 2'000'000U);
  EXPECT_GE(m.run_time.sum_ns, tasks * 2'000'000U);
  EXPECT_GT(m.run_time.p50_ns(), latency_histogram::upper_bound_ns(latency_histogram::bucket_of(2'000'000) - 1));
  EXPECT_GE(m.queue_wait.max_ns, 18'000'000U);
  EXPECT_LE(m.run_time.p50_ns(), m.run_time.p90_ns());
  EXPECT_LE(m.run_time.p90_ns(), m.run_time.p99_ns());
  EXPECT_LE(m.run_time.p99_ns(), m.run_time.max_ns);
}

TEST(LatencyHistogram, OneTaskInNIsSampledPerSubmittingThread) {
  tidepool::pool_options o = with_workers(2);
  o.latency_sample_every = 64;
  tidepool::pool p(o);
  // 6,400 consecutive submissions from one thread hold exactly 100 samples, whatever the phase
  // this thread's sampling counter was left in (by this pool or another: it is clamped to 64).
  for (int i = 0; i < 6'400; ++i) p.go([] {});
  p.stop_and_wait();
  const tidepool::pool_metrics m = p.metrics();
  EXPECT_EQ(m.succeeded, 6'400U);
  EXPECT_EQ(m.run_time.count, 100U);
  EXPECT_EQ(m.queue_wait.count, 100U);
}

TEST(LatencyHistogram, APoolSamplingEveryTaskIsNotHeldBackByAnotherPoolsLongerPeriod) {
  tidepool::pool_options rarely = with_workers(1);
  rarely.latency_sample_every = 1'000'000;
  tidepool::pool first(rarely);
  first.submit([] {}).get();  // leaves this thread's sampling counter far from 1
  tidepool::pool_options always = with_workers(1);
  always.latency_sample_every = 1;
  tidepool::pool second(always);
  for (int i = 0; i < 10; ++i) second.submit([] {}).get();
  EXPECT_EQ(second.metrics().run_time.count, 10U);
}

TEST(LatencyHistogram, RefusedSubmissionsAreNotSampled) {
  tidepool::pool_options o = with_workers(1);
  o.latency_sample_every = 1;
  tidepool::pool p(o);
  p.submit([] {}).get();
  p.stop_and_wait();
  for (int i = 0; i < 10; ++i) EXPECT_THROW(p.go([] {}), tidepool::pool_stopped);
  EXPECT_EQ(p.metrics().queue_wait.count, 1U);
  EXPECT_EQ(p.metrics().dropped, 10U);
}

TEST(LatencyHistogram, NothingIsRecordedWhenSamplingIsOff) {
  tidepool::pool_options o = with_workers(2);
  o.latency_sample_every = 0;
  tidepool::pool p(o);
  for (int i = 0; i < 1'000; ++i) p.go([] {});
  p.submit([] {}).get();
  p.stop_and_wait();
  const tidepool::pool_metrics m = p.metrics();
  EXPECT_EQ(m.run_time.count, 0U);
  EXPECT_EQ(m.queue_wait.count, 0U);
  EXPECT_EQ(m.run_time.p99_ns(), 0U);
}

TEST(LatencyHistogram, SubpoolAndGroupTasksAreSampledInTheRootPool) {
  tidepool::pool_options o = with_workers(2);
  o.latency_sample_every = 1;
  tidepool::pool p(o);
  {
    tidepool::subpool sub(p, 1);
    for (int i = 0; i < 10; ++i) sub.go([] {});
    sub.stop_and_wait();
    EXPECT_EQ(sub.metrics().run_time.count, 0U) << "a subpool's own metrics have no histograms";
  }
  tidepool::task_group g(p);
  for (int i = 0; i < 5; ++i) g.go([] {});
  g.wait();
  p.stop_and_wait();
  EXPECT_EQ(p.metrics().run_time.count, 15U);
  EXPECT_EQ(p.metrics().queue_wait.count, 15U);
}

TEST(LatencyHistogram, EveryWakeUpOfAParkedWorkerIsTimed) {
  tidepool::pool p(with_workers(2));
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(2ms);  // past any search (at most 200 µs): both workers park
    p.submit([] {}).get();
  }
  const tidepool::pool_metrics m = p.metrics();
  // Each round's task normally finds every worker parked and wakes one, timed once the woken
  // worker runs. Normally: a worker the machine descheduled for the whole pause may not have
  // parked yet, so only some wake-up is certain. A sample is taken once per park that slept,
  // and the wake-ups counted in `wakeups` are among them (no shrink or shutdown here).
  EXPECT_GE(m.wake_latency.count, 1U);
  EXPECT_LE(m.wake_latency.count, m.parks);
  EXPECT_LE(m.wake_latency.count, m.wakeups);
  EXPECT_EQ(sum_of_buckets(m.wake_latency), m.wake_latency.count);
  EXPECT_GT(m.wake_latency.max_ns, 0U);
  EXPECT_LE(m.wake_latency.max_ns, 10'000'000'000U);  // ten seconds: a clock gone wrong, not a slow host
}

}  // namespace
