// zeroqc serve: the inspection service.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <iostream>

#include "cli/commands.h"
#include "engines/vlm/vlm_engine.h"
#include "server/api.h"
#include "server/log.h"
#include "server/mqtt.h"
#include "server/webhook_target.h"
#include "station/station.h"

namespace zeroqc::cli {
namespace {

std::filesystem::path DefaultWebDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  for (auto d : {exe / ".." / "web", exe / "web", std::filesystem::path("web")})
    if (std::filesystem::exists(d / "index.html")) return std::filesystem::weakly_canonical(d);
  return {};
}

// A product's engine: the command-line engine flags as defaults, the product's settings on top.
ProductEngineFactory ProductEngines(EngineFlags flags, std::filesystem::path data_dir, bool allow_private_models) {
  if (flags.cache_dir.empty() && !flags.no_cache) flags.cache_dir = (data_dir / "cache").string();
  flags.vlm.allow_private_addresses = allow_private_models;  // checked again at each connection
  return [flags](const Product& p, const std::vector<std::filesystem::path>& refs) -> StatusOr<std::unique_ptr<Engine>> {
    EngineFlags f = flags;
    const auto& s = p.settings;
    auto t = ReadThresholdSettings(s, "product '" + p.name + "' settings");
    if (!t.ok()) return t.status();
    if (t->threshold) f.threshold = *t->threshold;
    if (t->sigmas) f.sigmas = *t->sigmas;
    try {
      f.provider = s.value("provider", f.provider);
      f.vlm.model = s.value("model", f.vlm.model);
      f.vlm.base_url = s.value("base_url", f.vlm.base_url);
      f.vlm.region = s.value("region", f.vlm.region);
      f.profile = s.value("profile", f.profile);
      f.box_format = s.value("box_format", f.box_format);
      f.cascade_low = s.value("low", f.cascade_low);
      f.cascade_high = s.value("high", f.cascade_high);
      if (s.contains("explain")) f.explain_nok = s["explain"].get<std::string>() == "nok";
      f.model_references = s.value("model_references", f.model_references);
      if (s.contains("line_window")) {
        f.line_window = s["line_window"].get<int>();
        if (f.line_window > 0 && !t->threshold) f.threshold = 0;  // the product's window over the server's --threshold
      } else if (f.threshold > 0 || p.engine == "vlm") {
        f.line_window = 0;  // a fixed threshold stays as set; the model judges alone
      }
      f.foreground = s.value("foreground", f.foreground);
      f.backbone = s.value("backbone", f.backbone);
      f.rotations = s.value("rotations", f.rotations);
    } catch (const nlohmann::json::exception& e) {
      return InvalidArgument("product '" + p.name + "' settings: " + e.what());
    }
    auto factory = MakeEngineFactory(p.engine, f, std::filesystem::path());
    if (!factory.ok()) return factory.status();
    return (*factory)(refs);
  };
}

}  // namespace

void RegisterServe(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "run the inspection service: HTTP API, web page, durable queue, webhooks, hot folder");
  struct Args {
    EngineFlags engine;
    ServiceConfig svc;
    std::string bind = "127.0.0.1", data, web;
    int port = 8080;
    int64_t max_upload = 64ll << 20;
    MqttConfig mqtt;
    std::string log_format = "text";
    double header_timeout = 10;
    FrontLimits front;
    std::string station;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--data", a->data, "folder for the database, images and caches (with --db: this worker's caches)")->required();
  cmd->add_option("--db", a->svc.db_url,
                  "PostgreSQL shared by every serve process, postgres://user[:password]@host[:port]/db (default: SQLite in --data)")
      ->envname("ZEROQC_DB");
  cmd->add_option("--lease", a->svc.lease_seconds,
                  "seconds a claimed inspection stays with a worker that stopped renewing it before another takes it (default 30)")
      ->check(CLI::Range(2, 3600));
  cmd->add_option("--port", a->port, "TCP port (default 8080; 0 picks a free one)")->check(CLI::Range(0, 65535));
  cmd->add_option("--bind", a->bind, "address to listen on (default 127.0.0.1: this machine only)");
  cmd->add_option("--workers", a->svc.workers, "inspections run at a time (default 1)")->check(CLI::Range(1, 64));
  cmd->add_option("--max-waiters", a->svc.max_waiters, "?wait=true requests held open at once; more get 202 + Location (default 4)")->check(CLI::Range(0, 6));
  cmd->add_option("--queue", a->svc.queue_capacity, "queued inspections before uploads get 503 (default 64)")->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--rate", a->svc.rate_per_second, "requests per second per API key (default 10)")->check(CLI::PositiveNumber);
  cmd->add_option("--burst", a->svc.burst, "requests a key may make at once (default 20)")->check(CLI::PositiveNumber);
  cmd->add_option("--max-upload-bytes", a->max_upload, "largest image accepted (default 67108864; 413 beyond)")->check(CLI::PositiveNumber);
  cmd->add_option("--header-timeout", a->header_timeout,
                  "seconds a client has to send a request's headers (then 408); its body must then keep 16 KiB/s (default 10)")
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--max-connections-per-address", a->front.max_per_address,
                  "open connections one client address may hold; more get 503 (default 16)")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--hot-folder", a->svc.hot_folder, "inspect files dropped here (moved to done/ or failed/)");
  cmd->add_option("--hot-folder-product", a->svc.hot_folder_product, "the product of hot-folder images");
  cmd->add_flag("--allow-private-webhooks", a->svc.allow_private_webhooks,
                "let products send webhooks to loopback, private and link-local addresses (refused by default)");
  cmd->add_option("--auth-failure-burst", a->svc.auth_failure_burst,
                  "failed authentications one address may make at once, then 1 per second (default 10; then 429)")
      ->check(CLI::Range(1.0, 1e9));
  cmd->add_flag("--allow-private-models", a->svc.allow_private_models,
                "let model calls (--base-url, products' base_url) go to loopback, private and link-local addresses, "
                "e.g. Ollama on this machine (refused by default)");
  cmd->add_option("--webhook-attempts", a->svc.webhook_attempts, "deliveries tried before the dead-letter list (default 5)")->check(CLI::Range(1, 100));
  cmd->add_option("--webhook-backoff", a->svc.webhook_backoff_ms, "first webhook retry delay in ms, doubling (default 1000)")->check(CLI::Range(0, 3'600'000));
  cmd->add_option("--mqtt", a->mqtt.url,
                  "MQTT broker, mqtt://[user[:password]@]host[:port]: products with settings.mqtt publish results and take images there")
      ->envname("ZEROQC_MQTT");
  cmd->add_option("--mqtt-client-id", a->mqtt.client_id, "this process's MQTT client id (default zeroqc-<host>-<pid>)");
  cmd->add_option("--station", a->station,
                  "run a station from this file: a GenICam camera and a PLC over Modbus TCP (docs/STATION.md)");
  cmd->add_option("--web", a->web, "folder of the web page (default: web/ beside the build)");
  cmd->add_option("--log-format", a->log_format, "text, or json: one JSON object per line (time, level, event, message, ...) (default text)")
      ->check(CLI::IsMember({"text", "json"}));
  a->engine.line_window = kServeLineWindow;
  a->engine.Register(cmd);
  cmd->get_option("--line-window")
      ->description("products' default line window: each part is judged by the last N parts as well as the references "
                    "(0: off, else 7-128; default " + std::to_string(kServeLineWindow) + "; off where a threshold is fixed; README: the line window)");
  cmd->callback([a] {
    // Signals are taken by this thread alone (sigwait), so that shutdown is orderly.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    log::Configure(a->log_format == "json" ? log::Format::kJson : log::Format::kText);
    a->engine.quiet = true;  // engine builds are logged by the service, not drawn as progress bars
    ServiceConfig c = a->svc;
    c.data_dir = a->data;
    c.limits = a->engine.limits();
    c.limits.max_bytes = a->max_upload;
    c.make_engine = ProductEngines(a->engine, c.data_dir, c.allow_private_models);
    if (!c.allow_private_models && a->engine.provider == "ollama" && a->engine.vlm.base_url.empty()) {
      log::Error("start_failed", "--provider ollama talks to this machine (127.0.0.1:11434): add --allow-private-models");
      throw ExitStatus{kExitBadArguments};
    }
    if (!a->engine.vlm.base_url.empty())
      if (auto t = CheckOutboundUrl(a->engine.vlm.base_url, c.allow_private_models, "--base-url", "--allow-private-models"); !t.ok()) {
        log::Error("start_failed", t.message());
        throw ExitStatus{kExitBadArguments};
      }
    c.backbones = BackboneNames();
    {  // the server's own choice, when it is one of the named ones
      const std::string chosen = a->engine.ChosenBackbone();
      if (auto spec = ResolveBackbone(chosen); !spec.ok()) {
        log::Error("start_failed", spec.status().message());
        throw ExitStatus{kExitBadArguments};
      }
      if (std::find(c.backbones.begin(), c.backbones.end(), chosen) != c.backbones.end()) c.default_backbone = chosen;
    }
    std::optional<StationConfig> station_config;
    if (!a->station.empty()) {  // checked whole before anything starts: one clear line, exit 2
      auto sc = LoadStation(a->station);
      if (!sc.ok()) {
        log::Error("start_failed", sc.status().message());
        throw ExitStatus{kExitBadArguments};
      }
      station_config = *sc;
    }
    auto svc = Service::Start(c);
    if (!svc.ok()) {
      log::Error("start_failed", svc.status().message());
      throw ExitStatus{kExitBadArguments};
    }
    std::unique_ptr<MqttBridge> mqtt;
    if (!a->mqtt.url.empty()) {
      MqttConfig m = a->mqtt;
      if (m.client_id.empty()) {
        char host[128] = "host";
        (void)gethostname(host, sizeof host - 1);
        m.client_id = "zeroqc-" + std::string(host) + "-" + std::to_string(getpid());
      }
      auto bridge = MqttBridge::Start(**svc, m);
      if (!bridge.ok()) {
        log::Error("start_failed", bridge.status().message());
        throw ExitStatus{kExitBadArguments};
      }
      mqtt = std::move(*bridge);
    }
    std::unique_ptr<Station> station;
    if (station_config) {
      auto st = Station::Start(**svc, *station_config);
      if (!st.ok()) {
        log::Error("start_failed", st.status().message());
        throw ExitStatus{kExitBadArguments};
      }
      station = std::move(*st);
    }
    const std::filesystem::path web = a->web.empty() ? DefaultWebDir() : std::filesystem::path(a->web);
    FrontLimits front = a->front;
    front.header_timeout = std::chrono::milliseconds(int64_t(a->header_timeout * 1000));
    auto api = ApiServer::Start(**svc, a->bind, a->port, web, front);
    if (!api.ok()) {
      log::Error("start_failed", api.status().message());
      throw ExitStatus{kExitBadArguments};
    }
    const auto queued = (*svc)->store().CountByStatus("queued");
    log::Info("listening",
              "listening on http://" + a->bind + ":" + std::to_string((*api)->port()) + " (data " + a->data + ", " +
                  (c.db_url.empty() ? "SQLite" : "PostgreSQL") + ", " + std::to_string(queued) + " queued)",
              {{"address", a->bind}, {"port", (*api)->port()}, {"data", a->data}, {"store", c.db_url.empty() ? "sqlite" : "postgres"},
               {"queued", queued}});
    std::cout << "port " << (*api)->port() << std::endl;  // for scripts and tests that ask for port 0
    int sig = 0;
    sigwait(&sigs, &sig);
    log::Info("stopping", "stopping (signal " + std::to_string(sig) + "); queued work resumes at the next start", {{"signal", sig}});
    if (station) station->Stop();  // the parts in hand are finished, their results written to the PLC and stored
    (*api)->Stop();
    mqtt.reset();  // before the service it reports on
  });
}

}  // namespace zeroqc::cli
