pub mod mjpeg;
