# @summary An absolute file system path.
type Masif_upgrader::Path = Pattern[/\A\/[^\n\0]*\z/]
