// Issue 28, item 5: the admin API for products and keys, over real HTTP. A create never wipes an
// existing product; PATCH changes part of one; DELETE retires it with its history; admin keys
// list, create and revoke keys, and a revoked key stops working at once.
#include <httplib.h>

#include <gtest/gtest.h>

#include "server/api_harness.h"

namespace zeroqc {
namespace {

nlohmann::json Parse(const httplib::Result& r) { return r ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json(); }

size_t VersionCount(Harness& h, const std::string& product) {
  return Parse(h.Client(h.reader).Get(("/v1/products/" + product + "/versions").c_str()))["items"].size();
}

TEST(Products, ACreateOfAnExistingNameIsRefusedUnlessItSaysItReplaces) {
  Harness h;
  h.Product("sponge", {{"settings", {{"threshold_sigmas", 3}}}});
  auto admin = h.Client(h.admin);
  const size_t versions = VersionCount(h, "sponge");
  auto r = admin.Post("/v1/products", R"({"name":"sponge"})", "application/json");
  ASSERT_EQ(r->status, 409) << r->body;
  EXPECT_NE(r->body.find("PATCH /v1/products/sponge"), std::string::npos) << r->body;
  EXPECT_EQ(Parse(admin.Get("/v1/products/sponge"))["settings"]["threshold_sigmas"], 3) << "nothing wiped";
  EXPECT_EQ(VersionCount(h, "sponge"), versions) << "no new version";
  EXPECT_EQ(Parse(admin.Get("/v1/products/sponge"))["references"].size(), 1u);

  r = admin.Post("/v1/products", R"({"name":"sponge","replace":"yes"})", "application/json");
  EXPECT_EQ(r->status, 400) << r->body;
  r = admin.Post("/v1/products", R"({"name":"sponge","replace":true,"settings":{"threshold_sigmas":1}})", "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  auto p = Parse(admin.Get("/v1/products/sponge"));
  EXPECT_EQ(p["settings"]["threshold_sigmas"], 1);
  EXPECT_EQ(p["references"].size(), 1u) << "a replace keeps the references";
  EXPECT_EQ(VersionCount(h, "sponge"), versions + 1);
}

TEST(Products, PatchChangesOnlyWhatItNames) {
  Harness h;
  h.Product("sponge", {{"settings", {{"threshold_sigmas", 3}, {"line_window", 16}}}, {"webhook_url", ""}});
  auto admin = h.Client(h.admin);
  const size_t versions = VersionCount(h, "sponge");

  auto r = admin.Patch("/v1/products/sponge", R"({"settings":{"line_window":0}})", "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  auto p = Parse(admin.Get("/v1/products/sponge"));
  EXPECT_EQ(p["settings"]["line_window"], 0);
  EXPECT_EQ(p["settings"]["threshold_sigmas"], 3) << "kept";
  EXPECT_EQ(p["engine"], "patch");
  EXPECT_EQ(VersionCount(h, "sponge"), versions + 1);

  r = admin.Patch("/v1/products/sponge", R"({"settings":{"threshold_sigmas":null}})", "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  p = Parse(admin.Get("/v1/products/sponge"));
  EXPECT_FALSE(p["settings"].contains("threshold_sigmas")) << "null removes a setting: " << p.dump();
  EXPECT_EQ(p["settings"]["line_window"], 0);

  // Refused, each with what is wrong, and nothing changes.
  const size_t before = VersionCount(h, "sponge");
  for (const auto& [body, says] : std::vector<std::pair<std::string, std::string>>{
           {R"({"name":"other"})", "name does not change"},
           {R"({"colour":"red"})", "colour is not a product field"},
           {R"({})", "some of"},
           {R"({"settings":{"rotations":5}})", "settings.rotations"},
           {R"({"settings":{"threshold":0.4,"line_window":16}})", "line_window to 0"},
           {R"({"settings":[1]})", "settings must be an object"},
           {R"({"engine":"magic"})", "engine is patch, vlm or cascade"},
           {R"([1,2])", "JSON object"},
           {R"({"webhook_url":"http://127.0.0.1:9/x"})", "webhook"}}) {
    r = admin.Patch("/v1/products/sponge", body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body << ": " << r->body;
    EXPECT_NE(r->body.find(says), std::string::npos) << body << ": " << r->body;
  }
  EXPECT_EQ(VersionCount(h, "sponge"), before);
  EXPECT_EQ(Parse(admin.Get("/v1/products/sponge"))["settings"]["line_window"], 0);

  EXPECT_EQ(admin.Patch("/v1/products/nothing", R"({"settings":{}})", "application/json")->status, 404);
  EXPECT_EQ(h.Client(h.writer).Patch("/v1/products/sponge", R"({"settings":{"line_window":0}})", "application/json")->status, 403);

  // To the model engine: the backbone recorded for the embedded one goes with it.
  r = admin.Patch("/v1/products/sponge", R"({"engine":"vlm","settings":{"line_window":null,"model":"m"}})", "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  p = Parse(admin.Get("/v1/products/sponge"));
  EXPECT_EQ(p["engine"], "vlm");
  EXPECT_FALSE(p["settings"].contains("backbone")) << p.dump();
}

TEST(Products, DeleteRetiresAProductAndKeepsItsHistory) {
  Harness h;
  h.Product("sponge");
  auto admin = h.Client(h.admin);
  auto up = h.Upload(h.writer, "sponge", Png(true), true);
  ASSERT_TRUE(up && up->status == 200) << (up ? up->body : "no answer");
  const std::string id = Parse(up)["id"];

  EXPECT_EQ(h.Client(h.writer).Delete("/v1/products/sponge")->status, 403);
  auto r = admin.Delete("/v1/products/sponge");
  ASSERT_EQ(r->status, 204) << r->body;
  EXPECT_EQ(admin.Get("/v1/products/sponge")->status, 404);
  EXPECT_TRUE(Parse(admin.Get("/v1/products"))["items"].empty());
  EXPECT_EQ(admin.Delete("/v1/products/sponge")->status, 404) << "retired already";
  up = h.Upload(h.writer, "sponge", Png(false), false);
  ASSERT_TRUE(up);
  EXPECT_EQ(up->status, 404) << up->body;
  auto kept = admin.Get(("/v1/inspections/" + id).c_str());
  ASSERT_EQ(kept->status, 200) << "its inspections stay";
  EXPECT_EQ(Parse(kept)["verdict"], "NOK");
  EXPECT_EQ(Parse(admin.Get("/v1/inspections?product=sponge"))["items"].size(), 1u);

  // The name can be used again: a new product, no references, one history.
  r = admin.Post("/v1/products", R"({"name":"sponge"})", "application/json");
  ASSERT_EQ(r->status, 201) << r->body;
  auto p = Parse(admin.Get("/v1/products/sponge"));
  EXPECT_TRUE(p["references"].empty()) << p.dump();
  auto versions = Parse(admin.Get("/v1/products/sponge/versions"))["items"];
  ASSERT_GE(versions.size(), 4u);
  EXPECT_EQ(versions[0]["change"]["op"], "create");
  EXPECT_EQ(versions[1]["change"]["op"], "retire");
  EXPECT_EQ(versions[1]["actor"], "admin");
}

TEST(Products, AdminKeysListCreateAndRevokeKeys) {
  Harness h;
  auto admin = h.Client(h.admin);
  auto r = admin.Get("/v1/keys");
  ASSERT_EQ(r->status, 200) << r->body;
  auto items = Parse(r)["items"];
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[1]["name"], "line 3");
  EXPECT_EQ(items[1]["scope"], "write");
  EXPECT_TRUE(items[1]["revoked_at"].is_null());
  EXPECT_EQ(r->body.find(h.writer), std::string::npos) << "never the key itself";
  EXPECT_EQ(r->body.find("hash"), std::string::npos);
  EXPECT_EQ(h.Client(h.writer).Get("/v1/keys")->status, 403);
  EXPECT_EQ(h.Client(h.reader).Post("/v1/keys", R"({"scope":"admin"})", "application/json")->status, 403);

  for (const auto& [body, says] : std::vector<std::pair<std::string, std::string>>{
           {R"({"name":"cam"})", "scope"},
           {R"({"scope":"root"})", "scope"},
           {R"({"scope":"write","colour":"red"})", "colour is not a key field"},
           {R"({"scope":7})", "must be a string"},
           {R"("write")", "JSON object"}}) {
    r = admin.Post("/v1/keys", body, "application/json");
    EXPECT_EQ(r->status, 400) << body << ": " << r->body;
    EXPECT_NE(r->body.find(says), std::string::npos) << body << ": " << r->body;
  }
  r = admin.Post("/v1/keys", R"({"scope":"write","name":"camera 2"})", "application/json");
  ASSERT_EQ(r->status, 201) << r->body;
  const auto made = Parse(r);
  const std::string key = made["key"];
  EXPECT_EQ(made["scope"], "write");
  h.Product("sponge");
  auto up = h.Upload(key, "sponge", Png(false), false);
  ASSERT_EQ(up->status, 202) << "the new key works: " << up->body;

  r = admin.Delete(("/v1/keys/" + std::to_string(made["id"].get<int64_t>())).c_str());
  ASSERT_EQ(r->status, 204) << r->body;
  EXPECT_EQ(h.Upload(key, "sponge", Png(false), false)->status, 401) << "revoked at once";
  EXPECT_EQ(admin.Delete(("/v1/keys/" + std::to_string(made["id"].get<int64_t>())).c_str())->status, 404);
  EXPECT_EQ(admin.Delete("/v1/keys/999")->status, 404);
  items = Parse(admin.Get("/v1/keys"))["items"];
  EXPECT_FALSE(items.back()["revoked_at"].is_null());

  // The one admin key cannot revoke itself: nobody could manage the service after it.
  r = admin.Delete(("/v1/keys/" + std::to_string(items[0]["id"].get<int64_t>())).c_str());
  EXPECT_EQ(r->status, 409) << r->body;
  EXPECT_NE(r->body.find("last admin key"), std::string::npos) << r->body;
  EXPECT_EQ(admin.Get("/v1/keys")->status, 200);
}

}  // namespace
}  // namespace zeroqc
