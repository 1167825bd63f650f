// zeroqc keys: the service's API keys, on its data folder or database directly (no running serve
// needed): create one (shown once), list them, revoke one.
#include <iomanip>
#include <iostream>

#include "cli/commands.h"
#include "server/store.h"

namespace zeroqc::cli {
namespace {

struct StoreFlags {
  std::string data, db;
  void Register(CLI::App* cmd) {
    cmd->add_option("--data", data, "the service's data folder (SQLite)");
    cmd->add_option("--db", db, "the service's PostgreSQL URL (as for serve --db)")->envname("ZEROQC_DB");
  }
  std::unique_ptr<Store> Open() const {
    if (data.empty() == db.empty()) {
      std::cerr << "zeroqc keys: give either the service's --data folder (SQLite) or its --db URL (PostgreSQL)\n";
      throw ExitStatus{kExitBadArguments};
    }
    auto store = Store::Open(data, db);
    if (!store.ok()) {
      std::cerr << "zeroqc keys: " << store.status().message() << "\n";
      throw ExitStatus{kExitBadArguments};
    }
    return std::move(*store);
  }
};

}  // namespace

void RegisterKeys(CLI::App& app) {
  auto* keys = app.add_subcommand("keys", "API keys of the service: create, list, revoke");
  keys->require_subcommand(1);

  auto* create = keys->add_subcommand("create", "make a key; it is printed once, only its hash is stored");
  struct CreateArgs {
    StoreFlags store;
    std::string scope, name;
  };
  auto c = std::make_shared<CreateArgs>();
  c->store.Register(create);
  // No default: a key made without thinking of its scope was read-only, and nobody noticed.
  create->add_option("--scope", c->scope, "read (results only), write (also send parts and review them) or admin (everything)")
      ->check(CLI::IsMember({"read", "write", "admin"}))
      ->required();
  create->add_option("--name", c->name, "who or what uses the key (shown in versions and reviews)");
  create->callback([c] {
    auto store = c->store.Open();
    auto key = store->CreateKey(*ParseScope(c->scope), c->name);
    if (!key.ok()) {
      std::cerr << "zeroqc keys: " << key.status().message() << "\n";
      throw ExitStatus{kExitBadArguments};
    }
    std::cout << *key << std::endl;
  });

  auto* list = keys->add_subcommand("list", "the keys: number, scope, name, when made, when revoked (never the key itself)");
  auto l = std::make_shared<StoreFlags>();
  l->Register(list);
  list->callback([l] {
    auto store = l->Open();
    std::cout << std::left << std::setw(6) << "id" << std::setw(7) << "scope" << std::setw(26) << "created" << std::setw(26) << "revoked"
              << "name\n";
    for (const auto& k : store->ListKeys())
      std::cout << std::setw(6) << k.id << std::setw(7) << ScopeName(k.scope) << std::setw(26) << k.created_at << std::setw(26)
                << (k.revoked_at.empty() ? "-" : k.revoked_at) << k.name << "\n";
  });

  auto* revoke = keys->add_subcommand("revoke", "stop a key from working, at once, in every serve process");
  struct RevokeArgs {
    StoreFlags store;
    int64_t id = 0;
  };
  auto r = std::make_shared<RevokeArgs>();
  r->store.Register(revoke);
  revoke->add_option("id", r->id, "the key's number (zeroqc keys list)")->required()->check(CLI::PositiveNumber);
  revoke->callback([r] {
    auto store = r->store.Open();
    if (auto s = store->RevokeKey(r->id); !s.ok()) {
      std::cerr << "zeroqc keys: " << s.message() << "\n";
      throw ExitStatus{kExitBadArguments};
    }
    std::cout << "key " << r->id << " revoked\n";
  });
}

}  // namespace zeroqc::cli
