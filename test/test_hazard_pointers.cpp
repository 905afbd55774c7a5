// The hazard-pointer domain's promises: a protected object is never reclaimed, an unprotected
// retired object is reclaimed by the next scan, the number of unreclaimed objects never exceeds
// the published bound (even while a thread stalls holding a hazard), exiting threads hand their
// retired objects over, and destroying the domain reclaims everything.

#include "tidepool/detail/hazard_pointers.hpp"

#include <gtest/gtest.h>

#include <algorithm>  // for std::max
#include <atomic>   // for std::atomic
#include <cstdint>  // for std::uint64_t
#include <cstdio>   // for std::printf
#include <latch>    // for std::latch
#include <memory>   // for std::make_unique
#include <stdexcept>  // for std::length_error
#include <thread>   // for std::thread
#include <vector>   // for std::vector

#include "stress_config.hpp"

namespace {

using tidepool::detail::hazard_domain;
using tidepool::testing::stress_count;

// Counts live instances, so a test can tell exactly what has been reclaimed.
std::atomic<long> live_objects{0};

struct tracked {
  static constexpr std::uint64_t alive_magic = 0x7469646570'6f6f6cULL;
  std::uint64_t magic = alive_magic;
  std::uint64_t value;
  explicit tracked(std::uint64_t v = 0) : value(v) { live_objects.fetch_add(1); }
  ~tracked() {
    magic = 0;
    live_objects.fetch_sub(1);
  }
  static void reclaim(void* p) noexcept { delete static_cast<tracked*>(p); }
};

class HazardPointers : public ::testing::Test {
 protected:
  void SetUp() override { live_objects.store(0); }
  void TearDown() override { EXPECT_EQ(live_objects.load(), 0) << "objects leaked or double-freed"; }
};

TEST_F(HazardPointers, ProtectReturnsTheCurrentValue) {
  hazard_domain domain;
  auto* a = new tracked(1);
  std::atomic<tracked*> source{a};
  {
    hazard_domain::holder h(domain);
    EXPECT_EQ(h.protect(source), a);
  }
  delete a;
}

TEST_F(HazardPointers, UnprotectedRetiredObjectIsReclaimedByTheNextScan) {
  hazard_domain domain;
  domain.retire(new tracked, &tracked::reclaim);
  EXPECT_EQ(domain.unreclaimed(), 1U);
  EXPECT_EQ(live_objects.load(), 1);
  domain.reclaim_unprotected();
  EXPECT_EQ(domain.unreclaimed(), 0U);
  EXPECT_EQ(live_objects.load(), 0);
}

TEST_F(HazardPointers, ScanRunsByItselfAtTheThreshold) {
  hazard_domain domain;
  hazard_domain::holder warm(domain);  // registers this thread, so the threshold is known
  const std::size_t threshold = domain.scan_threshold();
  EXPECT_EQ(threshold, 2 * domain.records() * hazard_domain::slots_per_record);
  for (std::size_t i = 0; i + 1 < threshold; ++i) domain.retire(new tracked, &tracked::reclaim);
  EXPECT_EQ(domain.unreclaimed(), threshold - 1);
  domain.retire(new tracked, &tracked::reclaim);
  EXPECT_EQ(domain.unreclaimed(), 0U);
}

TEST_F(HazardPointers, ProtectedObjectSurvivesScansUntilReset) {
  hazard_domain domain;
  auto* a = new tracked(7);
  std::atomic<tracked*> source{a};
  hazard_domain::holder h(domain);
  tracked* seen = h.protect(source);
  source.store(nullptr);
  domain.retire(a, &tracked::reclaim);
  for (int i = 0; i < 100; ++i) domain.retire(new tracked, &tracked::reclaim);
  domain.reclaim_unprotected();
  EXPECT_EQ(domain.unreclaimed(), 1U);
  EXPECT_EQ(seen->magic, tracked::alive_magic);
  EXPECT_EQ(seen->value, 7U);
  h.reset();
  domain.reclaim_unprotected();
  EXPECT_EQ(domain.unreclaimed(), 0U);
}

TEST_F(HazardPointers, HolderSlotsAreLimitedAndReusable) {
  hazard_domain domain;
  {
    hazard_domain::holder a(domain);
    hazard_domain::holder b(domain);
    static_assert(hazard_domain::slots_per_record == 2);
    EXPECT_THROW(hazard_domain::holder c(domain), std::length_error);
  }
  hazard_domain::holder again(domain);  // slots were given back
  EXPECT_EQ(domain.records(), 1U);
}

TEST_F(HazardPointers, ExitedThreadHandsItsRetiredObjectsOver) {
  hazard_domain domain;
  std::thread([&] {
    for (int i = 0; i < 3; ++i) domain.retire(new tracked, &tracked::reclaim);  // below the threshold
  }).join();
  EXPECT_EQ(domain.unreclaimed(), 3U);
  domain.reclaim_unprotected();  // adopts the exited thread's list
  EXPECT_EQ(domain.unreclaimed(), 0U);
  EXPECT_EQ(live_objects.load(), 0);
}

TEST_F(HazardPointers, RecordsOfExitedThreadsAreReused) {
  hazard_domain domain;
  for (int i = 0; i < 50; ++i) {
    std::thread([&] { hazard_domain::holder h(domain); }).join();
  }
  EXPECT_EQ(domain.records(), 1U);
}

TEST_F(HazardPointers, DestroyingTheDomainReclaimsEverything) {
  {
    hazard_domain domain;
    std::thread([&] {
      for (int i = 0; i < 2; ++i) domain.retire(new tracked, &tracked::reclaim);
    }).join();
    // This thread may inherit the exited thread's record and list: stay below the threshold.
    domain.retire(new tracked, &tracked::reclaim);
    EXPECT_EQ(live_objects.load(), 3);
  }
  EXPECT_EQ(live_objects.load(), 0);
}

TEST_F(HazardPointers, ThreadsOutliveDomainsAndDomainsOutliveThreads) {
  // A thread that used many short-lived domains exits safely, and domains whose threads are gone
  // are destroyed safely: neither side touches what the other freed (ASan would report it).
  std::vector<std::unique_ptr<hazard_domain>> survivors;
  std::thread t([&] {
    for (int i = 0; i < 200; ++i) {
      hazard_domain short_lived;
      short_lived.retire(new tracked, &tracked::reclaim);
    }
    for (int i = 0; i < 3; ++i) {
      survivors.push_back(std::make_unique<hazard_domain>());
      survivors.back()->retire(new tracked, &tracked::reclaim);
    }
  });
  t.join();
  EXPECT_EQ(live_objects.load(), 3);
  survivors.clear();
}

// A thread_local constructed before the thread first used any domain is destroyed after the
// thread's hazard-pointer exit handler; it must still be able to protect and retire (through a
// borrowed record), and that record must go back to the domain, not leak.
struct late_domain_user {
  hazard_domain* domain = nullptr;
  ~late_domain_user() {
    if (domain == nullptr) return;
    auto* obj = new tracked(5);
    std::atomic<tracked*> source{obj};
    {
      hazard_domain::holder h(*domain);
      EXPECT_EQ(h.protect(source)->value, 5U);
    }
    domain->retire(obj, &tracked::reclaim);
  }
};

TEST_F(HazardPointers, DomainStaysUsableFromDestructorsThatRunAfterTheThreadExitHandler) {
  hazard_domain domain;
  std::thread([&] {
    thread_local late_domain_user user;  // constructed before the first use of any domain
    user.domain = &domain;
    hazard_domain::holder first_use(domain);
  }).join();
  domain.reclaim_unprotected();
  EXPECT_EQ(domain.unreclaimed(), 0U);
  EXPECT_EQ(live_objects.load(), 0);
  // The borrowed record went back: this thread reuses it instead of creating another.
  hazard_domain::holder h(domain);
  EXPECT_EQ(domain.records(), 1U);
}

// A reader protects an object and then stalls. Another thread keeps retiring: unreclaimed never
// exceeds the bound, and the stalled reader's object stays intact.
TEST_F(HazardPointers, StalledReaderDoesNotLetUnreclaimedGrowPastTheBound) {
  hazard_domain domain;
  auto* pinned = new tracked(99);
  std::atomic<tracked*> source{pinned};
  std::latch protected_it(1);
  std::latch may_finish(1);
  std::thread stalled([&] {
    hazard_domain::holder h(domain);
    tracked* mine = h.protect(source);
    protected_it.count_down();
    may_finish.wait();
    EXPECT_EQ(mine->magic, tracked::alive_magic);
    EXPECT_EQ(mine->value, 99U);
  });
  protected_it.wait();

  source.store(nullptr);
  domain.retire(pinned, &tracked::reclaim);
  std::size_t peak = 0;
  const std::size_t retires = stress_count(100'000);
  for (std::size_t i = 0; i < retires; ++i) {
    domain.retire(new tracked, &tracked::reclaim);
    peak = std::max(peak, domain.unreclaimed());
    ASSERT_LE(domain.unreclaimed(), domain.unreclaimed_bound());
  }
  EXPECT_EQ(domain.records(), 2U);
  EXPECT_LE(peak, domain.scan_threshold()) << "only this thread retires, so one list's worth at most";
  may_finish.count_down();
  stalled.join();
  domain.reclaim_unprotected();
  EXPECT_EQ(domain.unreclaimed(), 0U);
  std::printf("%zu retires: peak unreclaimed %zu, bound %zu\n", retires, peak, domain.unreclaimed_bound());
}

// Readers protect and read a shared object while writers swap it out and retire the old one.
// A use-after-free here is caught by the magic check and, in CI, by AddressSanitizer.
TEST_F(HazardPointers, StressReadersNeverSeeReclaimedObjects) {
  hazard_domain domain;
  std::atomic<tracked*> shared{new tracked(0)};
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> max_unreclaimed{0};
  std::atomic<std::size_t> bound_violations{0};
  const std::size_t swaps_per_writer = stress_count(200'000, 5'000);

  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&] {
      std::size_t bad = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        hazard_domain::holder h(domain);
        tracked* p = h.protect(shared);
        bad += p->magic != tracked::alive_magic;
      }
      EXPECT_EQ(bad, 0U);
    });
  }
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      for (std::size_t i = 1; i <= swaps_per_writer; ++i) {
        tracked* old = shared.exchange(new tracked(i * 2 + static_cast<std::size_t>(w)));
        domain.retire(old, &tracked::reclaim);
        const std::size_t now = domain.unreclaimed();
        if (now > domain.unreclaimed_bound()) bound_violations.fetch_add(1);
        std::size_t seen = max_unreclaimed.load();
        while (now > seen && !max_unreclaimed.compare_exchange_weak(seen, now)) {
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  stop.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(bound_violations.load(), 0U);
  delete shared.load();
  domain.reclaim_unprotected();
  EXPECT_EQ(domain.unreclaimed(), 0U);
  std::printf("%zu swaps: peak unreclaimed %zu, bound %zu (%zu records)\n", 2 * swaps_per_writer,
              max_unreclaimed.load(), domain.unreclaimed_bound(), domain.records());
}

}  // namespace
