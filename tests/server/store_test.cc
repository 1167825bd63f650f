// The store on both databases: migrations, claims with leases (exactly-once completion), product
// revisions, and blobs that every worker of a shared database can read.
#include "server/store.h"

#include <future>

#include <gtest/gtest.h>

#include "servers/servers.h"
#include "test_support.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;

class StoreOn : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir();
    if (GetParam() == "postgres") url_ = testing::NewPostgresDatabase();
  }
  StatusOr<std::unique_ptr<Store>> Open(const std::string& worker_dir = "data") { return Store::Open(dir_ / worker_dir, url_); }
  fs::path dir_;
  std::string url_;
};
INSTANTIATE_TEST_SUITE_P(Db, StoreOn, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

std::string QueueOne(Store& s) {
  NewInspection n;
  n.product = "brush";
  n.image_blob = *s.blobs().Put("image bytes", "png");
  return *s.Enqueue(n);
}

TEST_P(StoreOn, MigrationsAreVersionedAndConcurrentOpensMigrateOnce) {
  if (GetParam() == "postgres") {  // two serve processes starting together on a new database
    auto a = std::async(std::launch::async, [&] { return Open("a"); });
    auto b = std::async(std::launch::async, [&] { return Open("b"); });
    auto sa = a.get(), sb = b.get();
    ASSERT_TRUE(sa.ok()) << sa.status().message();
    ASSERT_TRUE(sb.ok()) << sb.status().message();
  }
  {
    auto s = Open();
    ASSERT_TRUE(s.ok()) << s.status().message();
    EXPECT_EQ((*s)->schema_version(), Store::kSchemaVersion);
  }
  auto again = Open();  // reopening applies nothing twice
  ASSERT_TRUE(again.ok()) << again.status().message();
  again->reset();
  auto db = url_.empty() ? Db::OpenSqlite(dir_ / "data" / "zeroqc.db") : Db::OpenPostgres(url_);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE((*db)->Exec("UPDATE schema_version SET version = 99").ok());
  db->reset();
  auto future = Open();
  ASSERT_FALSE(future.ok());
  EXPECT_NE(future.status().message().find("newer"), std::string::npos);
}

// A worker that stops renewing loses its job to another after the lease; its late result is
// dropped, so the inspection finishes once, with one webhook delivery.
TEST_P(StoreOn, AnExpiredLeaseIsClaimedAgainAndTheLateResultIsDropped) {
  auto s = Open();
  ASSERT_TRUE(s.ok()) << s.status().message();
  Store& st = **s;
  ASSERT_TRUE(st.PutProduct({"brush", "patch", nlohmann::json::object(), "http://hooks.example/x", "k"}).ok());
  const std::string id = QueueOne(st);
  auto a = st.ClaimNext("worker-a", 1);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->id, id);
  EXPECT_EQ(a->claims, 1);
  EXPECT_FALSE(st.ClaimNext("worker-b", 1)) << "leased: nobody else gets it";
  EXPECT_EQ(st.RenewLeases("worker-a", 1), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  auto b = st.ClaimNext("worker-b", 30);
  ASSERT_TRUE(b) << "the lease ran out: another worker takes it";
  EXPECT_EQ(b->id, id);
  EXPECT_EQ(b->claims, 2);

  InspectionResult late;
  late.verdict = "NOK", late.score = 0.9, late.threshold = 0.5;
  late.objects.push_back({"anomaly", "red", "NOK", "late", {1, 1, 5, 5}, 0.9});
  Status f = st.Finish(id, "worker-a", late, "");
  EXPECT_EQ(f.code(), Code::kUnavailable) << f.message();
  InspectionResult mine;
  mine.verdict = "OK", mine.score = 0.1, mine.threshold = 0.5;
  ASSERT_TRUE(st.Finish(id, "worker-b", mine, "").ok());
  EXPECT_EQ(st.Finish(id, "worker-b", mine, "").code(), Code::kUnavailable) << "finishing twice is refused too";

  auto j = st.GetInspection(id);
  ASSERT_TRUE(j);
  EXPECT_EQ((*j)["status"], "done");
  EXPECT_EQ((*j)["verdict"], "OK");
  EXPECT_EQ((*j)["worker"], "worker-b");
  EXPECT_TRUE((*j)["result"]["objects"].empty()) << "no defect of the dropped result";
  EXPECT_EQ(st.DueDeliveries(10).size(), 1u) << "one webhook delivery";
  EXPECT_TRUE(st.DueDeliveries(10).empty()) << "a claimed delivery is not handed out twice";
}

TEST_P(StoreOn, ReleasedClaimsAreQueuedAtOnce) {
  auto s = Open();
  ASSERT_TRUE(s.ok());
  QueueOne(**s);
  ASSERT_TRUE((*s)->ClaimNext("stopping", 60));
  EXPECT_EQ((*s)->CountByStatus("queued"), 0);
  (*s)->ReleaseClaims("stopping");
  EXPECT_EQ((*s)->CountByStatus("queued"), 1);
  auto again = (*s)->ClaimNext("other", 60);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->claims, 2);
}

TEST_P(StoreOn, EveryChangeOfAProductBumpsItsRevision) {
  auto s = Open();
  ASSERT_TRUE(s.ok());
  Store& st = **s;
  ASSERT_TRUE(st.PutProduct({"brush", "patch", nlohmann::json::object(), "", ""}).ok());
  const int64_t r0 = st.Revision("brush");
  auto ref = st.AddReference("brush", *st.blobs().Put("good", "png"), "good.png");
  ASSERT_TRUE(ref.ok());
  const int64_t r1 = st.Revision("brush");
  EXPECT_GT(r1, r0);
  ASSERT_TRUE(st.PutProduct({"brush", "patch", {{"threshold", 0.4}}, "", ""}).ok());
  const int64_t r2 = st.Revision("brush");
  EXPECT_GT(r2, r1);
  EXPECT_TRUE(st.DeleteReference("brush", *ref));
  EXPECT_GT(st.Revision("brush"), r2);
  const int64_t r3 = st.Revision("brush");
  EXPECT_FALSE(st.DeleteReference("brush", *ref)) << "already gone";
  EXPECT_EQ(st.Revision("brush"), r3) << "nothing changed";
}

// Issue 28: a retired product leaves the lists but keeps its versions and inspections; its name
// starts again as a new product with no references. A revoked key stops working, stays listed
// with its time, and the last admin key cannot be revoked.
TEST_P(StoreOn, RetiredProductsAndRevokedKeysKeepTheirHistory) {
  auto s = Open();
  ASSERT_TRUE(s.ok());
  Store& st = **s;
  ASSERT_TRUE(st.PutProduct({"brush", "patch", nlohmann::json::object(), "", ""}, "ana").ok());
  ASSERT_TRUE(st.AddReference("brush", *st.blobs().Put("good", "png"), "good.png").ok());
  auto queued = st.Enqueue({"brush", "", "", "", *st.blobs().Put("part", "png"), "part.png"});
  ASSERT_TRUE(queued.ok());
  ASSERT_TRUE(st.RetireProduct("brush", "ana").ok());
  EXPECT_FALSE(st.GetProduct("brush").has_value());
  EXPECT_TRUE(st.ListProducts().empty());
  EXPECT_EQ(st.RetireProduct("brush", "ana").code(), Code::kNotFound) << "retired already";
  EXPECT_EQ(st.RetireProduct("nothing", "ana").code(), Code::kNotFound);
  EXPECT_TRUE(st.GetInspection(*queued).has_value()) << "its inspections stay";
  auto versions = st.Versions("brush");
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[0]["change"]["op"], "retire");
  EXPECT_EQ(versions[0]["actor"], "ana");

  ASSERT_TRUE(st.PutProduct({"brush", "patch", {{"threshold", 0.4}}, "", ""}, "ben").ok());
  ASSERT_TRUE(st.GetProduct("brush").has_value());
  EXPECT_TRUE(st.ListReferences("brush").empty()) << "a new product under an old name starts without references";
  versions = st.Versions("brush");
  ASSERT_EQ(versions.size(), 4u) << "one history under the name";
  EXPECT_EQ(versions[0]["change"]["op"], "create");

  int64_t a1 = 0, a2 = 0, w = 0;
  const auto admin1 = st.CreateKey(Scope::kAdmin, "ana", &a1), admin2 = st.CreateKey(Scope::kAdmin, "ben", &a2);
  const auto writer = st.CreateKey(Scope::kWrite, "line 3", &w);
  ASSERT_TRUE(admin1.ok() && admin2.ok() && writer.ok());
  EXPECT_TRUE(st.RevokeKey(w).ok());
  EXPECT_FALSE(st.FindKey(*writer)->has_value()) << "revoked at once";
  EXPECT_EQ(st.RevokeKey(w).code(), Code::kNotFound) << "revoked already";
  EXPECT_TRUE(st.RevokeKey(a1).ok());
  const Status last = st.RevokeKey(a2);
  EXPECT_EQ(last.code(), Code::kConflict) << last.message();
  EXPECT_TRUE(st.FindKey(*admin2)->has_value()) << "the last admin key still works";
  auto keys = st.ListKeys();
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0].name, "ana");
  EXPECT_FALSE(keys[0].revoked_at.empty());
  EXPECT_TRUE(keys[1].revoked_at.empty());
  EXPECT_EQ(keys[2].scope, Scope::kWrite);
  EXPECT_FALSE(keys[2].revoked_at.empty());
}

// Two workers with their own folders: a blob one stores, the other reads (fetched into its cache).
// (PostgreSQL only: one SQLite database has one worker folder.)
TEST(StorePostgres, BlobsReachEveryWorkerOfASharedDatabase) {
  const fs::path dir = testing::TempDir();
  const std::string url = testing::NewPostgresDatabase();
  auto a = Store::Open(dir / "worker-a", url);
  auto b = Store::Open(dir / "worker-b", url);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string bytes(300000, '\x07');
  auto name = (*a)->blobs().Put(bytes, "png");
  ASSERT_TRUE(name.ok()) << name.status().message();
  const fs::path at_b = (*b)->blobs().PathOf(*name);
  ASSERT_FALSE(at_b.empty());
  EXPECT_TRUE(at_b.string().starts_with((dir / "worker-b").string()));
  std::ifstream in(at_b, std::ios::binary);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(in)), {}), bytes);
  EXPECT_FALSE(fs::exists((*b)->blobs().PathOf(std::string(64, 'a') + ".png"))) << "an unknown blob is no file";
}

}  // namespace
}  // namespace zeroqc
