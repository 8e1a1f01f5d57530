variable "env" {
  type    = string
  default = "prod"
}

variable "vpc_cidr" {
  type    = string
  default = "10.20.0.0/16"
}

variable "office_cidrs" {
  description = "Office egress ranges allowed to reach the bastion"
  type        = list(string)
  default     = ["198.51.100.0/24", "192.0.2.64/26"]
}

variable "db_port" {
  type    = number
  default = 5432
}

variable "s3_prefix_list" {
  description = "com.amazonaws.us-east-1.s3"
  type        = string
  default     = "pl-63a5400a"
}
