-- The W3C `traceparent` of the append that wrote each order's record
-- (issue 12): a staff action on the order links its span to the order's
-- trace. NULL for orders applied with tracing off, or before this version.
ALTER TABLE orders ADD COLUMN trace text;
