#!/usr/bin/env ruby
# Sidekiq peer for `rushhour bench jobs` (scripts/bench-jobs.sh,
# docs/adr/0006-job-queue.md): burn down N no-op jobs and print one JSON line.
#
#   ruby scripts/peers/sidekiq_noop.rb [--jobs N] [--concurrency C]
#
# 1. flushes Redis DB 15 (BENCH_REDIS_URL; nothing else is touched),
# 2. enqueues N jobs with Sidekiq::Client.push_bulk in chunks of 1000 (timed:
#    enqueue_per_sec),
# 3. starts `sidekiq -r noop_worker.rb -c C -q bench` as a child and waits
#    until the server reports the N-th job finished (see noop_worker.rb for
#    why not Sidekiq::Stats), then checks the queue is empty and kills it.
#
# jobs_per_sec is N / (last job done - first job started): the steady drain,
# without the ~0.5 s the Ruby process needs to boot (reported as boot_seconds,
# and total_seconds from spawn). This favours the peer.
require "json"
require "optparse"
require "timeout"

opts = { jobs: 100_000, concurrency: 10, chunk: 1000 }
OptionParser.new do |o|
  o.on("--jobs N", Integer) { |v| opts[:jobs] = v }
  o.on("--concurrency C", Integer) { |v| opts[:concurrency] = v }
  o.on("--chunk N", Integer) { |v| opts[:chunk] = v }
end.parse!

ENV["BENCH_JOBS"] = opts[:jobs].to_s
require_relative "noop_worker"
require "sidekiq/api"

def now = Process.clock_gettime(Process::CLOCK_REALTIME)

Sidekiq.logger.level = Logger::WARN
Sidekiq.redis do |r|
  db = r.connection[:db]
  abort "refusing to flush redis db #{db}: use a dedicated db (BENCH_REDIS_URL)" if db.to_i.zero?
  r.flushdb
end

t0 = now
(0...opts[:jobs]).each_slice(opts[:chunk]) do |slice|
  Sidekiq::Client.push_bulk("class" => NoopWorker, "queue" => "bench", "args" => slice.map { |i| [i] })
end
enqueue_seconds = now - t0
queued = Sidekiq::Queue.new("bench").size
abort "enqueued #{queued} of #{opts[:jobs]}" unless queued == opts[:jobs]

spawned_at = now
pid = Process.spawn(
  { "BENCH_JOBS" => opts[:jobs].to_s, "BENCH_REDIS_URL" => REDIS_URL },
  "sidekiq", "-r", File.expand_path("noop_worker.rb", __dir__),
  "-c", opts[:concurrency].to_s, "-q", "bench", "-e", "production",
  out: File::NULL, err: File::NULL, pgroup: true,
)
begin
  done_at = nil
  Timeout.timeout(Integer(ENV.fetch("BENCH_TIMEOUT", "900"))) do
    until done_at
      sleep 0.02
      done_at = Sidekiq.redis { |r| r.get("bench:done_at") }&.to_f
      if (dead = Process.wait(pid, Process::WNOHANG))
        abort "sidekiq exited early (#{$?.inspect})"
      end
    end
  end
  first_at = Sidekiq.redis { |r| r.get("bench:first_at") }.to_f
  left = Sidekiq::Queue.new("bench").size
  abort "#{left} jobs still queued after the last one finished" unless left.zero?
ensure
  Process.kill("TERM", -pid) rescue nil
  Process.wait(pid) rescue nil
end

seconds = done_at - first_at
puts JSON.generate(
  peer: "sidekiq",
  version: Sidekiq::VERSION,
  ruby: RUBY_VERSION,
  redis: Sidekiq.redis { |r| r.info["redis_version"] },
  jobs: opts[:jobs],
  concurrency: opts[:concurrency],
  seconds: seconds.round(3),
  jobs_per_sec: (opts[:jobs] / seconds).round(1),
  boot_seconds: (first_at - spawned_at).round(3),
  total_seconds: (done_at - spawned_at).round(3),
  enqueue_per_sec: (opts[:jobs] / enqueue_seconds).round(1),
)
