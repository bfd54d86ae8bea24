-- How often each supervisor heartbeats. A supervisor is dead after 3 of its own intervals, not the
-- leader's: supervisors configured differently (or during a rollout of a new interval) judge each
-- other fairly.
ALTER TABLE spindle.supervisors
  ADD COLUMN heartbeat_ms integer NOT NULL DEFAULT 5000 CHECK (heartbeat_ms >= 1);
