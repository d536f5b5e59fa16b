# @summary The shared database: `mysql://user:password@host:port/db` or `sqlite:///path`.
type Masif_upgrader::Db_url = Variant[
  Pattern[/\Amysql:\/\/[^\n\0]+\z/, /\Asqlite:\/\/\/[^\n\0]+\z/],
  Sensitive[Pattern[/\Amysql:\/\/[^\n\0]+\z/, /\Asqlite:\/\/\/[^\n\0]+\z/]],
]
