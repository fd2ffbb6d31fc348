-- The W3C `traceparent` of whoever enqueued each job (issue 12): the
-- job's run span is a child of it. NULL: enqueued untraced, or before this
-- version.
ALTER TABLE jobs ADD COLUMN trace text;
