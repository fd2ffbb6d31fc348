# The Sidekiq side of scripts/peers/sidekiq_noop.rb: a job that does nothing,
# loaded by the server with `sidekiq -r ./noop_worker.rb -c C -q bench`.
#
# Sidekiq 6.x flushes its processed counter and busy set to Redis only on its
# 5 s heartbeat, so polling Sidekiq::Stats would add up to 5 s of slack to a
# ~10 s drain. Instead the server process counts finished jobs itself (one
# Mutex per job: no extra Redis traffic) and writes two timestamps to Redis:
# when the first job started and when the BENCH_JOBS-th finished.
require "sidekiq"

# redis-rb 4.8 warns on every push_bulk about Redis 5 return values.
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

REDIS_URL = ENV.fetch("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
Sidekiq.configure_server { |c| c.redis = { url: REDIS_URL } }
Sidekiq.configure_client { |c| c.redis = { url: REDIS_URL } }

module BenchCounter
  TOTAL = Integer(ENV.fetch("BENCH_JOBS", "100000"))
  LOCK = Mutex.new
  @done = 0
  @started = false

  def self.now = Process.clock_gettime(Process::CLOCK_REALTIME)

  def self.first!
    first = LOCK.synchronize { @started ? false : (@started = true) }
    Sidekiq.redis { |r| r.set("bench:first_at", now.to_s) } if first
  end

  def self.finished!
    last = LOCK.synchronize { (@done += 1) == TOTAL }
    Sidekiq.redis { |r| r.set("bench:done_at", now.to_s) } if last
  end
end

class NoopWorker
  include Sidekiq::Worker
  sidekiq_options queue: "bench", retry: false

  def perform(_i)
    BenchCounter.first!
    BenchCounter.finished!
  end
end
