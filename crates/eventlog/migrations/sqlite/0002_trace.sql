-- The W3C `traceparent` of the append that wrote each record (issue 12):
-- the processor links its batch span to every order's trace through it.
-- Records written before this version read as "no context" (NULL).
ALTER TABLE records ADD COLUMN trace TEXT;
