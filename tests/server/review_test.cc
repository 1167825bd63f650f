// Reviews that teach, over real HTTP: a reviewed part becomes a reference (once), versions and
// rollback, automatic references, and named defects that name later parts' regions.
#include <httplib.h>
#include <utime.h>

#include <fstream>
#include <future>
#include <map>
#include <regex>
#include <set>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "server/api_harness.h"
#include "server/log.h"
#include "cli/synthetic_plates.h"
#include "engines/patch/patch_engine.h"

namespace zeroqc {
namespace {

// Every test runs against both stores.
class Reviews : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Store, Reviews, ::testing::Values("sqlite", "postgres"), StoreName);

// Issue 27, finding 4: the same "OK, add to references" review six times, then five at once, made
// eleven copies of one image references (the threshold fell by half). One inspection is one
// reference: the repeats answer 409 and change nothing, also when they race.
TEST_P(Reviews, AnInspectionBecomesAReferenceOnceHoweverOftenItIsReviewed) {
  Harness h(UseLookupEngine);
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"brush","settings":{"reviews_add_references":"write"}})", "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", Shade(100), "good.png", "image/png"}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products/brush/references", ref)->status, 201);
  auto references = [&] {
    return nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/references")->body)["items"].size();
  };
  const nlohmann::json teach = {{"verdict", "OK"}, {"add_to_references", true}};
  const std::string first = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body)["id"];
  Review(h, first, teach, 201);
  for (int i = 0; i < 5; ++i) {
    auto again = Review(h, first, teach, 409);
    EXPECT_NE(again.dump().find("already reference"), std::string::npos) << again.dump();
  }
  EXPECT_EQ(references(), 2u);
  const std::string second = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(200), true)->body)["id"];
  std::vector<std::future<int>> racing;
  for (int i = 0; i < 5; ++i)
    racing.push_back(std::async(std::launch::async, [&] {
      auto r = h.Client(h.writer).Post(("/v1/inspections/" + second + "/review").c_str(), teach.dump(), "application/json");
      return r ? r->status : 0;
    }));
  int created = 0, conflicts = 0;
  for (auto& f : racing) {
    const int status = f.get();
    created += status == 201, conflicts += status == 409;
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(conflicts, 4);
  EXPECT_EQ(references(), 3u);
}

// Issue 11: a review that says "good part: add to references" teaches the product at once, as a
// new version; older inspections keep the version that judged them; a rollback restores the old
// references and with them the old verdicts.
TEST_P(Reviews, ReviewsTeachVersionsTraceAndRollbackRestores) {
  Harness h(UseLookupEngine);
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"brush","settings":{"reviews_add_references":"write"}})", "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", Shade(100), "good.png", "image/png"}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products/brush/references", ref)->status, 201);
  const int updates_before = LookupEngine::incremental_updates;

  auto first = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body);
  ASSERT_EQ(first["verdict"], "NOK") << "a good part the references do not cover yet: a false alarm";
  const int64_t v1 = first["reference_version"];
  EXPECT_EQ(v1, 2) << "version 1 created the product, version 2 added its reference";

  // Refusals that change nothing: NOK with add_to_references, a wrong type.
  Review(h, first["id"], {{"verdict", "NOK"}, {"add_to_references", true}}, 400);
  Review(h, first["id"], {{"verdict", "OK"}, {"add_to_references", "yes"}}, 400);
  auto reviewed = Review(h, first["id"], {{"verdict", "OK"}, {"comment", "false alarm"}, {"add_to_references", true}}, 201);
  EXPECT_EQ(reviewed["final_verdict"], "OK");
  EXPECT_EQ(reviewed["added_reference"]["version"], v1 + 1);

  auto second = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body);
  EXPECT_EQ(second["verdict"], "OK") << "the same image, after the review taught it";
  EXPECT_EQ(second["reference_version"], v1 + 1);
  EXPECT_EQ(LookupEngine::incremental_updates, updates_before + 1) << "taken incrementally, not rebuilt";
  auto again = nlohmann::json::parse(h.Client(h.reader).Get(("/v1/inspections/" + first["id"].get<std::string>()).c_str())->body);
  EXPECT_EQ(again["reference_version"], v1) << "an inspection made before the change keeps its version";
  EXPECT_EQ(again["verdict"], "NOK");

  // The versions say who did what, when.
  auto versions = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/versions")->body);
  EXPECT_EQ(versions["current"], v1 + 1);
  ASSERT_EQ(versions["items"].size(), 3u);
  const auto& top = versions["items"][0];
  EXPECT_EQ(top["version"], v1 + 1);
  EXPECT_EQ(top["actor"], "line 3") << "the reviewing key's name";
  EXPECT_EQ(top["change"]["op"], "add_reference");
  EXPECT_EQ(top["change"]["from_inspection"], first["id"]);
  EXPECT_EQ(top["references"].size(), 2u);
  EXPECT_FALSE(top["created_at"].get<std::string>().empty());

  // Rollback (admin only) to the version before the review: the old verdict comes back.
  auto denied = h.Client(h.writer).Post(("/v1/products/brush/versions/" + std::to_string(v1) + "/rollback").c_str(), "", "application/json");
  EXPECT_EQ(denied->status, 403);
  EXPECT_EQ(h.Client(h.admin).Post("/v1/products/brush/versions/99/rollback", "", "application/json")->status, 404);
  auto rb = h.Client(h.admin).Post(("/v1/products/brush/versions/" + std::to_string(v1) + "/rollback").c_str(), "", "application/json");
  ASSERT_EQ(rb->status, 200) << rb->body;
  auto rolled = nlohmann::json::parse(rb->body);
  EXPECT_EQ(rolled["version"], v1 + 2) << "a rollback is a new version";
  EXPECT_EQ(rolled["product"]["references"].size(), 1u);
  auto third = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body);
  EXPECT_EQ(third["verdict"], "NOK") << "the rollback restores the old verdict";
  EXPECT_EQ(third["reference_version"], v1 + 2);
  versions = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/versions")->body);
  EXPECT_EQ(versions["items"][0]["change"]["op"], "rollback");
  EXPECT_EQ(versions["items"][0]["change"]["to"], v1);
  EXPECT_EQ(versions["items"][0]["actor"], "admin");
  // ...and rolling forward again brings the taught reference back.
  ASSERT_EQ(h.Client(h.admin).Post(("/v1/products/brush/versions/" + std::to_string(v1 + 1) + "/rollback").c_str(), "", "application/json")->status, 200);
  EXPECT_EQ(nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body)["verdict"], "OK");
}

// Inspections running while a review adds a reference see the old engine or the new one, never a
// mix: every verdict agrees with the version it reports.
TEST_P(Reviews, AConcurrentReviewAndInspectionNeverSeeAHalfUpdatedBank) {
  Harness h([](ServiceConfig& c) {
    UseLookupEngine(c);
    c.workers = 2;
    c.rate_per_second = 1000;
    c.burst = 1000;
  });
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"brush","settings":{"reviews_add_references":"write"}})", "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", Shade(100), "good.png", "image/png"}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products/brush/references", ref)->status, 201);
  auto first = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), true)->body);
  const int64_t before = first["reference_version"];
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), false)->body)["id"]);
  Review(h, first["id"], {{"verdict", "OK"}, {"add_to_references", true}}, 201);
  for (int i = 0; i < 10; ++i) ids.push_back(nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(150), false)->body)["id"]);
  int old_seen = 0, new_seen = 0;
  for (const auto& id : ids) {
    auto j = h.WaitDone(id);
    if (j["reference_version"] == before) {
      EXPECT_EQ(j["verdict"], "NOK") << "the old version's verdict";
      ++old_seen;
    } else {
      EXPECT_EQ(j["reference_version"], before + 1);
      EXPECT_EQ(j["verdict"], "OK") << "the new version's verdict";
      ++new_seen;
    }
  }
  EXPECT_GT(new_seen, 0);
  std::printf("old version %d, new version %d\n", old_seen, new_seen);
}

// An image that no longer decodes (here: its stored file, or a worker's cached copy, damaged) cannot become a reference: the
// review is refused with the reason and nothing changes, neither the references nor the version.
TEST_P(Reviews, AddToReferencesRefusesAnImageThatDoesNotDecode) {
  Harness h(UseLookupEngine);
  const nlohmann::json j = BrushPartJudgedNok(h);
  ASSERT_EQ(j["verdict"], "NOK");
  const auto blob = h.svc->store().InspectionBlob(j["id"], false);
  ASSERT_TRUE(blob);
  const std::string png = Shade(150);
  std::ofstream(h.svc->store().blobs().PathOf(*blob), std::ios::binary) << png.substr(0, png.size() / 2);  // truncated
  const auto versions = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/versions")->body);
  auto refused = Review(h, j["id"], {{"verdict", "OK"}, {"add_to_references", true}}, 422);
  EXPECT_NE(refused.dump().find("cannot be a reference"), std::string::npos) << refused.dump();
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/versions")->body), versions) << "no new version";
  auto after = nlohmann::json::parse(h.Client(h.reader).Get(("/v1/inspections/" + j["id"].get<std::string>()).c_str())->body);
  EXPECT_TRUE(after["reviews"].empty()) << "the review itself is not recorded either";
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush")->body)["references"].size(), 1u);
}

// auto_references: an OK part scoring below margin x threshold joins the references by itself, up
// to max, as versions made by "auto_references"; a bad setting is refused.
TEST_P(Reviews, AutoReferencesAddConfidentGoodPartsUpToMax) {
  Harness h(UseLookupEngine);
  auto bad = h.Client(h.admin).Post("/v1/products", R"({"name":"brush","settings":{"auto_references":{"max":2,"margin":3}}})", "application/json");
  EXPECT_EQ(bad->status, 400) << "a margin above 1 would teach parts above the threshold";
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"brush","settings":{"auto_references":{"max":1,"margin":0.5}}})",
                                    "application/json")->status, 201);
  httplib::MultipartFormDataItems ref = {{"image", Shade(100), "good.png", "image/png"}};
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products/brush/references", ref)->status, 201);
  // LookupEngine: threshold 0.01; a shade 1 away scores 1/255 = 0.0039 < 0.5 x 0.01: confident.
  auto near = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(101), true)->body);
  ASSERT_EQ(near["verdict"], "OK");
  auto far = nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(102), true)->body);  // 2/255 = 0.0078: OK, not confident
  ASSERT_EQ(far["verdict"], "OK");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto product = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush")->body);
  EXPECT_EQ(product["references"].size(), 2u) << "the confident part only";
  auto versions = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush/versions")->body);
  EXPECT_EQ(versions["items"][0]["actor"], Service::kAutoActor);
  EXPECT_EQ(versions["items"][0]["change"]["from_inspection"], near["id"]);
  EXPECT_EQ(nlohmann::json::parse(h.Upload(h.writer, "brush", Shade(99), true)->body)["verdict"], "OK");  // confident too, but max is 1
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/brush")->body)["references"].size(), 2u) << "max reached";
}

std::string PlatePng(std::mt19937& rng, testing::Defect d) {
  cv::Mat mask;
  std::vector<uint8_t> buf;
  cv::imencode(".png", testing::Plate(rng, d, &mask), buf);
  return std::string(buf.begin(), buf.end());
}

// Issue 11, item 3: an operator names a NOK region in a review ({"verdict": "NOK", "defects":
// [{"box", "name"}]}); later NOK regions like it get its name, with the similarity in the reason.
// The real embedded engine on synthetic plates: a scratch and a missing hole, one example each.
// The embedded engine itself, with the converted backbone (not the harness's stand-in).
void UsePatchEngine(ServiceConfig& c) {
  c.make_engine = [](const zeroqc::Product&, const std::vector<fs::path>& refs) -> StatusOr<std::unique_ptr<Engine>> {
    PatchEngineOptions o;
    o.backbone_spec = testing::BackboneSpecPath();
    auto e = PatchEngine::Create(o, refs);
    if (!e.ok()) return e.status();
    return std::unique_ptr<Engine>(std::move(*e));
  };
}

// The product's calibration, once its engine is built (with time to spare on a loaded machine).
nlohmann::json Calibrated(Harness& h, const std::string& product) {
  httplib::Client slow("127.0.0.1", h.api->port());
  slow.set_read_timeout(300, 0);
  slow.set_bearer_token_auth(h.reader.c_str());
  auto c = slow.Get(("/v1/products/" + product + "/calibration").c_str());
  EXPECT_TRUE(c && c->status == 200) << (c ? c->body : "no answer");
  return c && c->status == 200 ? nlohmann::json::parse(c->body) : nlohmann::json::object({{"references", nlohmann::json::array()}});
}

TEST_P(Reviews, NamedDefectsNameLikeRegionsOfLaterParts) {
  REQUIRE_BACKBONE();
  Harness h(UsePatchEngine);
  for (const char* bad : {R"({"name":"plate","settings":{"naming":{"min_similarity":2}}})", R"({"name":"plate","settings":{"naming":0.5}})",
                          R"({"name":"plate","settings":{"naming":{"min_similarity":"high"}}})"})
    EXPECT_EQ(h.Client(h.admin).Post("/v1/products", bad, "application/json")->status, 400) << bad;
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"plate","settings":{"naming":{"min_similarity":0.5}}})", "application/json")->status, 201);
  std::mt19937 rng(11);
  for (int i = 0; i < 4; ++i) {
    httplib::MultipartFormDataItems ref = {{"image", PlatePng(rng, testing::Defect::kNone), "good.png", "image/png"}};
    ASSERT_EQ(h.Client(h.admin).Post("/v1/products/plate/references", ref)->status, 201);
  }
  // The engine is built first (its calibration: each reference's own score), with time to spare
  // on a loaded machine; then each part is queued and polled for.
  nlohmann::json cal;
  ASSERT_NO_FATAL_FAILURE(cal = Calibrated(h, "plate"));
  ASSERT_EQ(cal["references"].size(), 4u);
  for (const auto& ref : cal["references"]) {
    EXPECT_GT(ref["score"].get<double>(), 0) << cal.dump();
    EXPECT_EQ(ref["outlier"], false) << "four good plates: none unlike the others";
  }
  EXPECT_GT(cal["threshold"].get<double>(), 0);
  auto inspect = [&](testing::Defect d) {
    auto r = h.Upload(h.writer, "plate", PlatePng(rng, d), false);
    EXPECT_TRUE(r && r->status == 202) << (r ? r->body : "no answer");
    nlohmann::json j;
    for (int i = 0; r && i < 1200; ++i) {
      auto g = h.Client(h.poller).Get(("/v1/inspections/" + nlohmann::json::parse(r->body)["id"].get<std::string>()).c_str());
      if (g && g->status == 200 && (j = nlohmann::json::parse(g->body))["status"] == "done") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(j["verdict"], "NOK") << j.dump();
    if (!j.contains("result") || !j["result"].is_object()) j["result"] = {{"objects", nlohmann::json::array()}};
    EXPECT_FALSE(j["result"]["objects"].empty()) << j.dump();
    return j;
  };
  auto first_name = [](const nlohmann::json& j) { return j["result"]["objects"].empty() ? "" : j["result"]["objects"][0].value("name", ""); };
  auto scratch = inspect(testing::Defect::kScratch);
  EXPECT_EQ(first_name(scratch), "anomaly") << "nothing named yet";
  ASSERT_FALSE(scratch["result"]["objects"].empty());
  const nlohmann::json scratch_box = scratch["result"]["objects"][0]["bounding_box"];

  // Refusals that record nothing: a box outside the image, a defect in an OK review, a reserved or
  // empty name, a malformed list.
  const std::string id = scratch["id"];
  Review(h, id, {{"verdict", "NOK"}, {"defects", {{{"box", {{"x_min", 0}, {"y_min", 0}, {"x_max", 5000}, {"y_max", 10}}}, {"name", "scratch"}}}}}, 400);
  Review(h, id, {{"verdict", "OK"}, {"defects", {{{"box", scratch_box}, {"name", "scratch"}}}}}, 400);
  Review(h, id, {{"verdict", "NOK"}, {"defects", {{{"box", scratch_box}, {"name", "anomaly"}}}}}, 400);
  Review(h, id, {{"verdict", "NOK"}, {"defects", {{{"box", scratch_box}, {"name", ""}}}}}, 400);
  Review(h, id, {{"verdict", "NOK"}, {"defects", "scratch"}}, 400);
  // Issue 27, finding 6: nineteen good boxes and a bad last one. Every box is checked before any is
  // described (a forward pass each), so the refusal names the bad one without describing the rest.
  nlohmann::json many = nlohmann::json::array();
  for (int i = 0; i < 19; ++i) many.push_back({{"box", scratch_box}, {"name", "scratch"}});
  many.push_back({{"box", {{"x_min", 0}, {"y_min", 0}, {"x_max", 5000}, {"y_max", 10}}}, {"name", "scratch"}});
  auto refused = Review(h, id, {{"verdict", "NOK"}, {"defects", many}}, 400);
  EXPECT_NE(refused.dump().find("defect 20 ('scratch'): the box must lie within"), std::string::npos) << refused.dump();
  Review(h, id, {{"verdict", "NOK"}, {"defects", {{{"box", {{"x_min", "a"}}}, {"name", "scratch"}}}}}, 400);
  auto unchanged = nlohmann::json::parse(h.Client(h.reader).Get(("/v1/inspections/" + id).c_str())->body);
  EXPECT_TRUE(unchanged["reviews"].empty()) << "refused reviews are not recorded";
  EXPECT_EQ(nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/plate/defect-examples")->body)["items"].size(), 0u);

  auto named = Review(h, id, {{"verdict", "NOK"}, {"defects", {{{"box", scratch_box}, {"name", "scratch"}}}}}, 201);
  ASSERT_EQ(named["named_defects"].size(), 1u) << named.dump();
  EXPECT_EQ(named["named_defects"][0]["name"], "scratch");
  EXPECT_EQ(named["named_defects"][0]["box"], scratch_box);

  // The other type: named from its own first part.
  auto hole = inspect(testing::Defect::kMissingHole);
  Review(h, hole["id"], {{"verdict", "NOK"}, {"defects", {{{"box", hole["result"]["objects"][0]["bounding_box"]}, {"name", "missing hole"}}}}}, 201);
  auto examples = nlohmann::json::parse(h.Client(h.reader).Get("/v1/products/plate/defect-examples")->body)["items"];
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(examples[0]["actor"], "line 3");
  EXPECT_EQ(examples[1]["inspection"], hole["id"]);

  // Later parts: each region named after the example it resembles, the similarity in the reason.
  for (int i = 0; i < 2; ++i) {
    auto s = inspect(testing::Defect::kScratch);
    EXPECT_EQ(first_name(s), "scratch") << s.dump();
    EXPECT_NE(s["result"]["objects"][0]["reason"].get<std::string>().find("similarity"), std::string::npos);
    auto m = inspect(testing::Defect::kMissingHole);
    EXPECT_EQ(first_name(m), "missing hole") << m.dump();
  }

  // A retired example names nothing more; an unknown one is 404; a reader may not retire one.
  const std::string path = "/v1/products/plate/defect-examples/" + std::to_string(examples[0]["id"].get<int64_t>());
  EXPECT_EQ(h.Client(h.reader).Delete(path.c_str())->status, 403);
  EXPECT_EQ(h.Client(h.writer).Delete(path.c_str())->status, 204);
  EXPECT_EQ(h.Client(h.writer).Delete(path.c_str())->status, 404);
  auto last = inspect(testing::Defect::kScratch);
  EXPECT_EQ(first_name(last), "anomaly") << "not like the missing hole either";
}

// A defective plate among the references is marked unlike the others, by the rule refs check
// applies (the page draws the flag; it no longer computes it).
TEST_P(Reviews, CalibrationMarksAReferenceUnlikeTheOthers) {
  REQUIRE_BACKBONE();
  Harness h(UsePatchEngine);
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"plate"})", "application/json")->status, 201);
  std::mt19937 rng(5);
  httplib::MultipartFormDataItems refs;
  for (int i = 0; i < 5; ++i) refs.push_back({"image", PlatePng(rng, testing::Defect::kNone), "good.png", "image/png"});
  refs.push_back({"image", PlatePng(rng, testing::Defect::kScratch), "scratched.png", "image/png"});
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products/plate/references", refs)->status, 201);
  nlohmann::json cal;
  ASSERT_NO_FATAL_FAILURE(cal = Calibrated(h, "plate"));
  ASSERT_EQ(cal["references"].size(), 6u);
  for (const auto& ref : cal["references"])
    EXPECT_EQ(ref.value("outlier", nlohmann::json()), ref["filename"] == "scratched.png") << cal.dump();
}

// An engine without region descriptors (here a stand-in; in the service the vlm engine, which names
// defects itself) refuses a naming review whole: 400, nothing recorded.
TEST_P(Reviews, NamingADefectNeedsAnEngineWithRegionDescriptors) {
  Harness h(UseLookupEngine);
  const nlohmann::json j = BrushPartJudgedNok(h);
  ASSERT_EQ(j["verdict"], "NOK");
  nlohmann::json box = {{"x_min", 1}, {"y_min", 1}, {"x_max", 20}, {"y_max", 20}};
  auto refused = Review(h, j["id"], {{"verdict", "NOK"}, {"defects", {{{"box", box}, {"name", "dent"}}}}}, 400);
  EXPECT_NE(refused.dump().find("names defects itself"), std::string::npos) << refused.dump();
  auto after = nlohmann::json::parse(h.Client(h.reader).Get(("/v1/inspections/" + j["id"].get<std::string>()).c_str())->body);
  EXPECT_TRUE(after["reviews"].empty());
  // The calibration of the product: its threshold and references.
  auto c = h.Client(h.reader).Get("/v1/products/brush/calibration");
  ASSERT_EQ(c->status, 200) << c->body;
  auto cal = nlohmann::json::parse(c->body);
  EXPECT_EQ(cal["threshold"], 0.01);
  EXPECT_EQ(cal["references"].size(), 1u);
  EXPECT_EQ(cal["version"], 2);
  // A product without references has nothing to calibrate: 400 with the reason, not a hang or a 500.
  ASSERT_EQ(h.Client(h.admin).Post("/v1/products", R"({"name":"empty"})", "application/json")->status, 201);
  auto none = h.Client(h.reader).Get("/v1/products/empty/calibration");
  EXPECT_EQ(none->status, 400);
  EXPECT_NE(none->body.find("no reference images"), std::string::npos) << none->body;
  EXPECT_EQ(h.Client(h.reader).Get("/v1/products/ghost/calibration")->status, 404);
}

}  // namespace
}  // namespace zeroqc
