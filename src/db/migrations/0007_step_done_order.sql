-- The order in which a run's body saw its recorded calls end (steps, jobs, sleeps, events): a replay
-- hands recorded results back in this order, so that concurrent branches (Promise.all, Promise.race)
-- interleave as they did when the calls first ran. NULL for a call still waiting, and for rows
-- written before this column existed (a replay orders those by seq).

ALTER TABLE spindle.workflow_steps ADD COLUMN done_seq integer;
